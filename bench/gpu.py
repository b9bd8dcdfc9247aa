"""GPU benchmark: diffusers pipelines vs Darkroom (in-process engine and HTTP), same card, same call.

    python -m bench.gpu --out DIR [--cases sd15,sd_turbo,sdxl] [--no-levers] [--no-compile]

Builds random-weight SD1.5, SD-Turbo (SD2.1 architecture) and SDXL models from the real
configs (pipelines/configs), then for each case runs (a) the diffusers pipeline as a user would,
(b) Darkroom's engine in-process, (c) Darkroom over HTTP on 127.0.0.1 with many concurrent
clients (bench/load.py in a separate process). Also measures each lever on the bare UNet
(bench/levers.py) and the matmul ceiling. Writes DIR/<card>.json in the bench/results format
and prints a table last.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bench.arch import Architecture, build
from bench.baseline import PROMPT, make_pipeline, time_pipeline
from bench.levers import measure_levers
from bench.timing import card_name, matmul_ceiling_tflops, sync


@dataclass(frozen=True)
class Case:
    name: str
    arch: str
    family: str
    side: int
    steps: int
    guidance: float  # diffusers' guidance_scale; 0 = no CFG
    sampler: str  # Darkroom's sampler that reproduces the diffusers scheduler
    baseline_scheduler: str  # "ddim" | "euler_trailing"
    batches: tuple[int, ...]  # diffusers batch sizes (images per call)
    engine_max_batch: int  # Darkroom max images per forward pass
    saturate_requests: int  # concurrent requests for the saturated runs
    http_concurrency: int
    unet_gmac: float  # per UNet row at this latent size


CASES = {
    "sd15": Case("sd15", "sd15", "sd1", 512, 25, 7.5, "ddim", "ddim", (1, 4, 16), 16, 48, 32, 401.6),
    "sd_turbo": Case("sd_turbo", "sd21", "sd2", 512, 1, 0.0, "onestep", "euler_trailing", (1, 8, 32), 32, 192, 64, 401.6),
    "sdxl": Case("sdxl", "sdxl", "sdxl", 1024, 30, 5.0, "ddim", "ddim", (1, 4), 4, 12, 8, 3380.6),
}


FAST_INTERVAL = (1.0, 1e9)  # guidance only while sigma in (1, inf): the opt-in "fast" mode
DEVICE = "cuda"  # --tiny runs the whole script on the CPU with shrunk models
DTYPE = torch.float16


def darkroom_model(
    arch: Architecture, case: Case, graphs: bool, compiled: bool = False, dtype: torch.dtype | None = None
) -> object:
    from pipelines.accel import enable_compile, enable_cuda_graphs
    from pipelines.models import assemble

    components = {"unet": arch.unet, "vae": arch.vae, "text_encoder": arch.text_encoder}
    if arch.text_encoder_2 is not None:
        components["text_encoder_2"] = arch.text_encoder_2
    scheduler = dict(arch.config["scheduler"])
    if case.baseline_scheduler == "euler_trailing":
        scheduler["timestep_spacing"] = "trailing"
    model = assemble(case.family, components, scheduler, model_id=case.name, device=DEVICE, dtype=dtype or DTYPE,
                     description="random weights, real architecture")
    if compiled:
        enable_compile(model)
    if graphs:
        enable_cuda_graphs(model)
    return model


def engine_settings(case: Case) -> object:
    from server.settings import Settings

    return Settings(
        device=DEVICE, dtype=str(DTYPE).removeprefix("torch."), max_batch=case.engine_max_batch, max_active=case.engine_max_batch * 2,
        max_queue=4096, max_batch_pixels=case.engine_max_batch * case.side * case.side,
        request_timeout_s=3600, preview_every=0, encode_threads=8, max_steps=1000, max_num_images=case.engine_max_batch,
    )


def spec_for(case: Case, seed: int, interval: tuple[float, float] | None = None) -> object:
    from server.generation import GenerationSpec

    return GenerationSpec(
        id=uuid.uuid4().hex, model=case.name, prompt=PROMPT, negative_prompt="", sampler=case.sampler,
        steps=case.steps, guidance=case.guidance if case.guidance > 0 else 1.0, seed=seed,
        width=case.side, height=case.side, num_images=1, output_format="png", timeout_s=3600,
        guidance_interval=interval,
    )


async def _serve_all(engine: object, specs: list[object]) -> tuple[float, list[object]]:
    start = time.perf_counter()
    futures = [engine.submit(s) for s in specs]  # type: ignore[attr-defined]
    results = await asyncio.gather(*futures)
    return time.perf_counter() - start, list(results)


def run_engine(engine: object, specs: list[object]) -> tuple[float, list[object]]:
    return asyncio.run(_serve_all(engine, specs))


def png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_load(engine: object, settings: object, case: Case, requests: int, open_rate: float | None) -> dict:
    """Load through HTTP: uvicorn in this process, bench/load.py clients in another process.

    Closed loop at the case's concurrency (saturated images/s), then, when `open_rate` is given,
    Poisson arrivals at that rate (p99 latency under load vs the unloaded latency).
    """
    import uvicorn

    from server.app import create_app

    port = free_port()
    app = create_app(settings, engine=engine)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    common = [
        sys.executable, "-m", "bench.load", "--url", f"http://127.0.0.1:{port}", "--json",
        "--sampler", case.sampler, "--steps", str(case.steps), "--width", str(case.side), "--height", str(case.side),
        "--guidance", str(case.guidance if case.guidance > 0 else 1.0), "--warmup", "2",
    ]
    runs = {"closed": common + ["--mode", "closed", "--concurrency", str(case.http_concurrency), "--requests", str(requests)]}
    if open_rate:
        runs["open"] = common + ["--mode", "open", "--rate", f"{open_rate:.3f}", "--duration", "20"]
    reports: dict = {}
    try:
        for name, cmd in runs.items():
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            try:
                reports[name] = json.loads(proc.stdout[proc.stdout.index("{"):])
            except ValueError:
                reports[name] = {"error": (proc.stdout + proc.stderr)[-800:]}
            print(f"  http {name}: {json.dumps(reports[name])[:400]}", flush=True)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return reports


def bench_case(
    case: Case, tokenizer_dir: Path, out_dir: Path, ceiling: float, http: bool, compile_engine: bool = False
) -> tuple[list[dict], list[dict]]:
    from server.engine import Engine

    records: list[dict] = []
    notes: list[dict] = []
    print(f"== {case.name}: building random-weight {case.arch}", flush=True)
    t0 = time.perf_counter()
    arch = build(case.arch, device=DEVICE, dtype=DTYPE, tiny=DEVICE == "cpu")
    sync()
    notes.append({"case": case.name, "build_s": round(time.perf_counter() - t0, 1)})
    reset_peak()

    # (a) the diffusers pipeline, as a user would run it
    pipe = make_pipeline(arch, tokenizer_dir, euler_trailing=case.baseline_scheduler == "euler_trailing")
    best = None
    for batch in case.batches:
        seconds = time_pipeline(pipe, batch, case.steps, case.guidance, case.side, repeats=2 if batch > 1 else 3)
        rec = {"case": case.name, "system": "diffusers", "mode": "batch1" if batch == 1 else "saturated",
               "batch": batch, "exact": True, "images_per_s": round(batch / seconds, 3), "latency_s": round(seconds, 4)}
        records.append(rec)
        best = rec if best is None or rec["images_per_s"] > best["images_per_s"] else best
        print(f"  diffusers   batch={batch:3d} {seconds:7.3f} s  {batch / seconds:7.2f} img/s", flush=True)
    peak_diffusers = peak_gib()
    gen = torch.Generator("cpu").manual_seed(0)
    reference = pipe(prompt=[PROMPT], num_inference_steps=case.steps, guidance_scale=case.guidance,  # type: ignore[operator]
                     height=case.side, width=case.side, generator=gen, output_type="np").images[0]
    reference = np.round(reference * 255).astype(np.int16)
    del pipe
    gc.collect()
    torch.cuda.empty_cache()

    # (b) Darkroom's engine in-process, eager and with CUDA graphs per batch bucket
    variants = [("darkroom-eager", False, False, None), ("darkroom", True, False, None)]
    if case.guidance > 0:  # fast mode: no uncond pass once sigma < 1 (about the last 40% of steps)
        variants.append(("darkroom-fast", True, False, FAST_INTERVAL))
    if compile_engine:  # exact mode only: every row guided keeps the UNet batch at bucket sizes
        variants = [v for v in variants if v[0] != "darkroom-eager"] + [("darkroom-compiled", True, True, None)]
    for label, graphs, compiled, interval in variants:
        try:
            engine = model = None
            reset_peak()
            model = darkroom_model(arch, case, graphs, compiled)
            settings = engine_settings(case)
            engine = Engine([model], settings)  # type: ignore[list-item]
            engine.start()
            warm_start = time.perf_counter()
            # warm-up: every bucket size the saturated run will use (captures the CUDA graphs)
            run_engine(engine, [spec_for(case, 1000 + i, interval) for i in range(case.engine_max_batch)])
            run_engine(engine, [spec_for(case, 2000, interval)])
            warmup_s = time.perf_counter() - warm_start
            singles = [run_engine(engine, [spec_for(case, 0, interval)]) for _ in range(3)]
            latency = float(np.median([s for s, _ in singles]))
            image = png_pixels(singles[0][1][0].images[0])
            diff = np.abs(image - reference)
            exact = bool(diff.max() <= 16 and diff.mean() <= 1.0) and interval is None
            elapsed, _ = run_engine(engine, [spec_for(case, i, interval) for i in range(case.saturate_requests)])
            ips = case.saturate_requests / elapsed
            peak = peak_gib()
            for mode, lat, rate in (("batch1", latency, 1 / latency), ("saturated", elapsed, ips)):
                records.append({"case": case.name, "system": label, "mode": mode, "exact": exact,
                                "images_per_s": round(rate, 3), "latency_s": round(lat, 4),
                                "requests": 1 if mode == "batch1" else case.saturate_requests,
                                "max_abs_diff_vs_diffusers_uint8": int(diff.max()),
                                "mean_abs_diff_vs_diffusers_uint8": round(float(diff.mean()), 3)})
            rows_per_image = 2 if case.guidance > 0 else 1
            tflops = 2 * case.unet_gmac * 1e9 * rows_per_image * case.steps * ips / 1e12
            notes.append({"case": case.name, "system": label, "warmup_s": round(warmup_s, 1),
                          "peak_gib": round(peak, 2), "peak_gib_diffusers": round(peak_diffusers, 2),
                          "unet_tflops_saturated": round(tflops, 1), "mfu": round(tflops / ceiling, 3)})
            print(f"  {label:15s} batch1 {latency:7.3f} s | saturated {ips:7.2f} img/s | diff max {diff.max()} "
                  f"mean {diff.mean():.2f} | warm-up {warmup_s:.1f} s", flush=True)
            if label == "darkroom" and http:
                load = http_load(engine, settings, case, case.saturate_requests * 2, open_rate=0.8 * ips if case.steps > 1 else None)
                closed = load.get("closed", {})
                if "images_per_s" in closed:
                    records.append({"case": case.name, "system": "darkroom-http", "mode": "saturated", "exact": exact,
                                    "images_per_s": round(closed["images_per_s"], 3),
                                    "latency_s": round(closed.get("latency_p50_s") or 0.0, 4),
                                    "p99_s": closed.get("latency_p99_s"), "concurrency": case.http_concurrency,
                                    "failures": closed.get("failures")})
                opened = load.get("open", {})
                if opened.get("latency_p99_s"):
                    records.append({"case": case.name, "system": "darkroom-http", "mode": "poisson80", "exact": exact,
                                    "images_per_s": round(opened["images_per_s"], 3),
                                    "latency_s": round(opened.get("latency_p50_s") or 0.0, 4),
                                    "p99_s": opened["latency_p99_s"], "unloaded_latency_s": round(latency, 4),
                                    "p99_over_unloaded": round(opened["latency_p99_s"] / latency, 2),
                                    "rate_per_s": round(0.8 * ips, 3), "failures": opened.get("failures")})
                notes.append({"case": case.name, "http_load": load})
            engine.stop()
            engine = model = None
            gc.collect()
            torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - a failing variant keeps the other variants' figures
            import traceback

            traceback.print_exc()
            notes.append({"case": case.name, "system": label, "error": repr(exc)[:500]})
            if engine is not None:
                engine.stop()
            engine = model = None
            gc.collect()
            torch.cuda.empty_cache()
    if best is not None:
        notes.append({"case": case.name, "diffusers_best": best})
    del arch
    gc.collect()
    torch.cuda.empty_cache()
    return records, notes


EXACT_MODE_SYSTEMS = ("darkroom-eager", "darkroom", "darkroom-http", "darkroom-compiled")
FP32_PROBE_TOLERANCE = 0.02  # max abs difference of [0, 1] images, fp32 on the same card


def annotate_exactness(result: dict) -> None:
    """Set `exact` of exact-mode records from this call's fp32 probe of the same case.

    Random-weight fp16 trajectories are chaotic (latent std ~15-22 instead of ~1), so fp16
    images of random weights differ between any two implementations (also at guidance 1); the
    fp32 probe on the same card checks the arithmetic itself. The fp16 pixel differences stay
    in each record (max/mean_abs_diff_vs_diffusers_uint8).
    """
    verdicts: dict[str, tuple[bool, str]] = {}
    for note in result["notes"]:
        probe_name = note.get("probe", "")
        if not probe_name.endswith(":fp32") or "stages" not in note:
            continue
        image = next(s for s in note["stages"] if s["stage"] == "image")
        ok = image["max_abs_diff"] <= FP32_PROBE_TOLERANCE and image["ours_nonfinite"] == 0
        case = probe_name.split(":")[1]
        verdicts[case] = (ok, f"{probe_name} max {image['max_abs_diff']:.4f} mean {image['mean_abs_diff']:.5f}")
    for record in result["records"]:
        if record["case"] in verdicts and record["system"] in EXACT_MODE_SYSTEMS:
            record["exact"], record["exact_basis"] = verdicts[record["case"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", default="sd15,sd_turbo,sdxl,levers",
                        help="in order: case names and/or 'levers' (bare-UNet levers)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--compile-engine", action="store_true",
                        help="also serve with a torch.compile'd UNet (about a minute per bucket shape)")
    parser.add_argument("--tiny", action="store_true", help="shrunk models on the CPU: checks the script runs")
    parser.add_argument("--side", type=int, default=None, help="override every case's image side (with --tiny)")
    args = parser.parse_args()
    global DEVICE, DTYPE
    if args.tiny:
        DEVICE, DTYPE = "cpu", torch.float32
        for key, case in list(CASES.items()):
            CASES[key] = replace(case, side=args.side or 64, steps=min(case.steps, 3), batches=case.batches[:2],
                                 engine_max_batch=4, saturate_requests=8, http_concurrency=4)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    import diffusers

    from pipelines.text import write_hf_clip_tokenizer_files

    card = card_name() if DEVICE == "cuda" else "cpu-tiny"
    ceiling = matmul_ceiling_tflops() if DEVICE == "cuda" else 1.0
    print(f"card: {card}  torch {torch.__version__}  diffusers {diffusers.__version__}  ceiling {ceiling:.0f} TFLOP/s", flush=True)
    tokenizer_dir = out_dir / "clip_tokenizer"
    write_hf_clip_tokenizer_files(tokenizer_dir)
    result: dict = {"card": card, "torch": torch.__version__, "diffusers": diffusers.__version__,
                    "matmul_ceiling_tflops": round(ceiling, 1), "records": [], "levers": [], "notes": []}
    path = out_dir / f"gpu_{card.replace(' ', '_')}.json"

    def save() -> None:
        path.write_text(json.dumps(result, indent=1))

    for name in args.tasks.split(","):
        if name.startswith("probe:"):
            from bench.probe import probe

            parts = name.split(":")
            case = CASES[parts[1]]
            dtype = torch.float32 if "fp32" in parts else DTYPE
            for part in parts[2:]:
                if part.startswith("g="):
                    case = replace(case, guidance=float(part[2:]))
            arch = build(case.arch, device=DEVICE, dtype=dtype, tiny=DEVICE == "cpu")
            try:
                model = darkroom_model(arch, case, graphs=False, dtype=dtype)
                result["notes"].append({"probe": name, "stages": probe(arch, model, case, tokenizer_dir)})
            except Exception as exc:  # noqa: BLE001 - keep what was measured before the failure
                import traceback

                traceback.print_exc()
                result["notes"].append({"probe": case.name, "error": repr(exc)[:500]})
            save()
            del arch
            gc.collect()
            torch.cuda.empty_cache()
            continue
        if name == "levers":
            if DEVICE != "cuda":
                continue
            arch = build("sd15")
            try:
                result["levers"] += measure_levers("sd15", arch.unet, arch.config, 64, [2, 8, 32], 401.6, ceiling,
                                                   compile_too=not args.no_compile)
            except Exception as exc:  # noqa: BLE001 - keep what was measured before the failure
                import traceback

                traceback.print_exc()
                result["notes"].append({"task": "levers", "error": repr(exc)[:500]})
            save()
            del arch
            gc.collect()
            torch.cuda.empty_cache()
            continue
        try:
            records, notes = bench_case(CASES[name], tokenizer_dir, out_dir, ceiling, http=not args.no_http,
                                        compile_engine=args.compile_engine)
        except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others' figures
            import traceback

            traceback.print_exc()
            result["notes"].append({"case": name, "error": repr(exc)[:500]})
            continue
        result["records"] += records
        result["notes"] += notes
        save()
    annotate_exactness(result)
    save()
    print("\ncase      system          mode       img/s    latency_s  exact")
    for r in result["records"]:
        print(f"{r['case']:9s} {r['system']:15s} {r['mode']:9s} {r['images_per_s']:8.2f} {r['latency_s']:9.3f}  {r['exact']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
