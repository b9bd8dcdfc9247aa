"""Smoke of the server as deployed, on a GPU (or SMOKE_DEVICE=cpu): `darkroom serve` on the manifest's default model
with its defaults (on CUDA: UNet and text encoder CUDA graphs, the decoder lever) and the warm-up on, then:
the same request twice (byte-identical), its round trip alone (median of 5), three prompts alone and batched with neighbours (the largest pixel
difference), a bad input (its status), and when GET /v1/models lists a tiny decoder, "decoder": "tiny" alone and
beside full-decoder requests (status, size, difference from the full decoder's image).

    python -m bench.serve_smoke OUT_DIR        # writes OUT_DIR/serve_smoke.json and OUT_DIR/serve.log
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PORT = 8124


def call(path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "image/png"} if data else {}  # raw PNG bytes
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def pixels(png: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(png)).convert("RGB"))).int()


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DARKROOM_DEVICE": os.environ.get("SMOKE_DEVICE", "cuda"), "DARKROOM_PORT": str(PORT), "DARKROOM_WARM_UP": "true"}
    started = time.perf_counter()
    with open(out / "serve.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-c", "from server.cli import main; main()", "serve"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    result: dict[str, object] = {}
    try:
        while time.perf_counter() - started < 180 and server.poll() is None:
            if call("/readyz")[0] == 200:
                result["ready_s"] = round(time.perf_counter() - started, 1)
                break
            time.sleep(1.0)
        body = {"prompt": "a small red circle left of a big blue square", "seed": 7, "steps": 10}
        first, again = call("/generate", body), call("/generate", body)
        result["same_request_twice"] = [first[0], again[0], first[1] == again[1]]
        if result["same_request_twice"][:2] != [200, 200]:  # type: ignore[index]
            raise SystemExit(f"the server did not answer with images: {json.dumps(result)} (serve.log)")
        times = []
        for _ in range(5):  # a lone request's round trip (the server idle otherwise), median of 5
            t0 = time.perf_counter()
            call("/generate", body)
            times.append(time.perf_counter() - t0)
        result["alone_s"] = round(sorted(times)[2], 4)
        prompts = [f"{n} green triangles" for n in ("one", "two", "three")]
        alone = {p: pixels(call("/generate", {"prompt": p, "seed": 7, "steps": 10})[1]) for p in prompts}
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda p: call("/generate", {"prompt": p, "seed": 7, "steps": 10}), prompts * 4))
        result["concurrent_status"] = sorted({a[0] for a in answers})
        # the same prompt and seed, alone and batched with neighbours: max |difference| in 0-255 and pixels differing
        diffs = [(alone[p] - pixels(png)).abs() for p, (_, png) in zip(prompts * 4, answers)]
        result["batched_vs_alone"] = {"max": int(max(d.max() for d in diffs)), "pixels": [int((d > 0).sum()) for d in diffs]}
        result["bad_input"] = call("/generate", {"prompt": "x", "steps": 0})[0]
        models = json.loads(call("/v1/models")[1] or b"{}").get("models", [{}])
        result["decoders"] = models[0].get("decoders")
        if "tiny" in (result["decoders"] or []):
            tiny_body = {**body, "decoder": "tiny"}
            status, png = call("/generate", tiny_body)
            result["tiny_status"] = status
            if status == 200:
                tiny, full = pixels(png), pixels(first[1])
                result["tiny_size"] = list(tiny.shape)
                result["tiny_vs_full"] = {"mean": round(float((tiny - full).abs().float().mean()), 2), "max": int((tiny - full).abs().max())}
                with concurrent.futures.ThreadPoolExecutor(8) as pool:  # tiny and full requests batched together
                    mixed = list(pool.map(lambda d: call("/generate", {**body, "decoder": d}), ["tiny", "full"] * 4))
                result["mixed_status"] = sorted({m[0] for m in mixed})
                result["mixed_max_diff"] = {d: int(max((pixels(m[1]) - (tiny if d == "tiny" else full)).abs().max()
                                                       for m, dd in zip(mixed, ["tiny", "full"] * 4) if dd == d))
                                            for d in ("tiny", "full")}
    finally:
        server.terminate()
        server.wait(timeout=30)
    (out / "serve_smoke.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
