"""GPU check of the docker-compose defaults on the bundled model: `darkroom serve` with the compiled UNet,
CUDA graphs and the start-up warm-up (Engine.warm_up), as the container runs it.

Starts the server in a subprocess, polls /readyz (503 "warming up" until every batch bucket has
run once), then sends concurrent POST /generate requests and checks each answers 200 with a PNG.
Records the seconds to readiness, the readiness answers seen, the engine's warm-up log lines, the
first requests' latencies and the card, as JSON.

    python -m bench.warmup_check --out DIR [--timeout-s 240] [--requests 16]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT = 8123


def _get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, type(e).__name__


def _generate(seed: int) -> tuple[int, float, bool]:
    body = json.dumps({"prompt": "a large red circle left of a small blue square", "seed": seed}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/generate", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "image/png"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            data = r.read()
            return r.status, time.perf_counter() - started, data[:8] == b"\x89PNG\r\n\x1a\n"
    except urllib.error.HTTPError as e:
        return e.code, time.perf_counter() - started, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout-s", type=float, default=240.0)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--device", default="cuda", help="cpu: checks the script (warm-up forced on, compile a no-op)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DARKROOM_DEVICE": args.device, "DARKROOM_COMPILE_UNET": "true", "DARKROOM_PORT": str(PORT),
           "DARKROOM_WARM_UP": "true"}
    log_path = args.out / "warmup_serve.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-c", "from server.cli import main; main()", "serve"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    answers: dict[str, int] = {}
    ready_s = None
    try:
        while time.perf_counter() - started < args.timeout_s and server.poll() is None:
            status, text = _get("/readyz")
            key = f"{status} warming up" if status == 503 and "warming up" in text else str(status)
            answers[key] = answers.get(key, 0) + 1
            if status == 200:
                ready_s = time.perf_counter() - started
                break
            time.sleep(1.0)
        results: list[tuple[int, float, bool]] = []
        if ready_s is not None:
            with concurrent.futures.ThreadPoolExecutor(args.requests) as pool:
                results = list(pool.map(_generate, range(args.requests)))
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    try:
        card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                              check=False).stdout.strip() or "unknown"
    except FileNotFoundError:
        card = "cpu"
    lines = log_path.read_text().splitlines()
    report = {
        "card": card, "ready_s": None if ready_s is None else round(ready_s, 1), "readyz_answers": answers,
        "warm_up_log": [line for line in lines if "warm-up" in line and "request warm-up-" not in line],
        "requests": len(results), "ok_png": sum(1 for s, _, png in results if s == 200 and png),
        "statuses": sorted({s for s, _, _ in results}),
        "latency_s": sorted(round(t, 3) for _, t, _ in results),
        "server_exit": server.returncode,
    }
    (args.out / "warmup_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
