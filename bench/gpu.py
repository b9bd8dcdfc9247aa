"""GPU benchmark: diffusers pipelines vs Darkroom (in-process engine and HTTP), same card, same call.

    python -m bench.gpu --out DIR [--tasks sd_turbo,sd15,vae_levers,fp8,fp8_quality,xformers] [--budget-s 480]

Builds random-weight SD1.5, SD-Turbo (SD2.1 architecture) and SDXL models from the real
configs (pipelines/configs), then for each case runs (a) the diffusers pipeline as a user would,
(b) Darkroom's engine in-process, one variant per lever set (VARIANTS), (c) Darkroom over HTTP
on 127.0.0.1 with many concurrent clients (bench/load.py in a separate process), in each
response kind (JSON with base64 PNG or JPEG, or raw JPEG bytes). Also measures levers on the
bare UNet and VAE decoder (bench/levers.py: graphs, compile, channels-last, SDPA backends,
xformers, fp8), fp8's quality cost on the bundled model (bench/fp8_quality.py), and the matmul
ceiling. Writes DIR/gpu_<card>.json in the bench/results format after every task, and prints a
table last. --budget-s skips what would not finish in time (each skip is noted); --tiny runs
everything on the CPU with shrunk models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bench.arch import Architecture, build, build_tiny_vae
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


@dataclass(frozen=True)
class Variant:
    """One way of serving a case: which levers are on, and which HTTP runs follow the in-process ones."""

    label: str  # the records' system
    graphs: bool = True  # CUDA graph per UNet bucket (the default on CUDA)
    compiled_unet: bool = False
    interval: tuple[float, float] | None = None  # guidance interval: the "fast" mode
    vae_accel: str = "off"  # "off" | "graphs" | "compile" (pipelines.accel.BucketedDecoder)
    overlap: bool = False  # decode thread on its own CUDA stream
    pipeline: bool = False  # settings.decode_pipeline: wait for a decode only after the next pass is queued
    cudnn_benchmark: bool = False  # settings.cudnn_benchmark, for this variant only
    text_graphs: bool = False  # settings.text_encoder_graphs (the server's default on CUDA since call 23; off here
    # so the rows stay comparable with runs 1-12): the CLIP text encoder replayed as CUDA graphs
    tiny_vae: bool = False  # fast mode: requests ask for "decoder": "tiny" (a TAESD-layout AutoencoderTiny)
    vae_channels_last: bool = True  # settings.vae_channels_last: a compiled decoder in NHWC memory (NCHW before run 14)
    output_format: str = "png"  # of the in-process runs
    http: tuple[str, ...] = ()  # response kinds: "json-png", "json-jpeg", "bytes-jpeg"
    poisson: bool = False  # Poisson arrivals at 80% of the saturated rate, first response kind
    est_s: float = 30.0  # rough cost on an H200, for --budget-s

    @property
    def graphs_key(self) -> tuple[bool, str]:
        """What a variant compiles: two variants with the same key share torch.compile's graphs and caches."""
        return self.compiled_unet, f"{self.vae_accel}-nhwc" if self.vae_channels_last else self.vae_accel

    @property
    def exact_mode(self) -> bool:
        """No lever that changes the arithmetic beyond fp16 rounding (compile's fusion counts as rounding)."""
        return self.interval is None and not self.tiny_vae


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "sd_turbo": (
        Variant("darkroom", http=("json-png", "json-jpeg", "bytes-jpeg"), est_s=45),
        Variant("darkroom-vaegraph", vae_accel="graphs", output_format="jpeg", http=("bytes-jpeg",), est_s=25),
        Variant("darkroom-vaegraph-overlap", vae_accel="graphs", overlap=True, output_format="jpeg", http=("bytes-jpeg",), est_s=25),
        Variant("darkroom-vaecompile-overlap", vae_accel="compile", overlap=True, output_format="jpeg", http=("bytes-jpeg",), est_s=110),
        Variant("darkroom-vaecompile", vae_accel="compile", output_format="jpeg", http=("bytes-jpeg", "json-png"), est_s=110),
        Variant("darkroom-vaecompile-pipeline", vae_accel="compile", pipeline=True, output_format="jpeg", http=("bytes-jpeg",),
                est_s=60),
        # fast mode: the tiny decoder (TAESD's layout, ~1/20 of the KL decoder's arithmetic at 512x512), compiled
        Variant("darkroom-vaecompile-tinyvae", vae_accel="compile", tiny_vae=True, output_format="jpeg",
                http=("bytes-jpeg",), est_s=90),
        # the compiled decoders in NCHW memory, as before run 14 (settings.vae_channels_last off)
        Variant("darkroom-vaecompile-nchw", vae_accel="compile", vae_channels_last=False, output_format="jpeg",
                http=("bytes-jpeg",), est_s=90),
        Variant("darkroom-vaecompile-tinyvae-nchw", vae_accel="compile", vae_channels_last=False, tiny_vae=True,
                output_format="jpeg", http=("bytes-jpeg",), est_s=90),
        # Poisson arrivals at 80% of the HTTP saturated rate against one request at a time through HTTP
        Variant("darkroom-vaecompile-poisson", vae_accel="compile", output_format="jpeg", http=("bytes-jpeg",),
                poisson=True, est_s=120),
    ),
    "sd15": (
        Variant("darkroom", http=("json-png",), poisson=True, est_s=60),
        Variant("darkroom-fast", interval=(1.0, 1e9), est_s=15),
        Variant("darkroom-vaegraph-overlap", vae_accel="graphs", overlap=True, output_format="jpeg", http=("bytes-jpeg",),
                poisson=True, est_s=60),
        Variant("darkroom-jpeg", output_format="jpeg", http=("bytes-jpeg",), poisson=True, est_s=60),
    ),
    "sdxl": (
        Variant("darkroom", http=("json-png",), poisson=True, est_s=80),
        Variant("darkroom-fast", interval=(1.0, 1e9), est_s=40),
    ),
}
FAST_INTERVAL = (1.0, 1e9)  # guidance only while sigma in (1, inf): the opt-in "fast" mode (--fast-interval)
COMPILED_VARIANTS = (  # --compile-engine: a torch.compile'd UNet (about a minute per bucket shape, cached)
    Variant("darkroom-compiled", compiled_unet=True, est_s=120),
    Variant("darkroom-compiled-fast", compiled_unet=True, interval=FAST_INTERVAL, est_s=120),
    # run 7's remaining gaps: the UNet compiled beside the compiled decoder (SD-Turbo's eager UNet is
    # ~25% of its GPU time; a 25-step model's eager decoder ~10-15% at saturation), JPEG on the GPU
    Variant("darkroom-compiled-vaecompile", compiled_unet=True, vae_accel="compile", output_format="jpeg",
            http=("bytes-jpeg",), est_s=300),
    Variant("darkroom-compiled-fast-vaecompile", compiled_unet=True, interval=FAST_INTERVAL, vae_accel="compile",
            output_format="jpeg", est_s=300),
    # cuDNN's autotuner on top: the compiled decoder is most of SD-Turbo's GPU time (8.9 of ~10.1 ms per image)
    Variant("darkroom-compiled-vaecompile-cudnn", compiled_unet=True, vae_accel="compile", cudnn_benchmark=True,
            output_format="jpeg", http=("bytes-jpeg",), est_s=300),
    # the text encoder's CUDA graphs on top (the server's default): 7.82 -> 3.48 ms at batch 1 for the bundled
    # one-step student on an H200 (training/results/call23/record.md); SD-Turbo's OpenCLIP encoder is 23 layers
    Variant("darkroom-compiled-vaecompile-text", compiled_unet=True, vae_accel="compile", text_graphs=True,
            output_format="jpeg", http=("bytes-jpeg",), est_s=300),
    Variant("darkroom-compiled-vaecompile-tinyvae", compiled_unet=True, vae_accel="compile", tiny_vae=True,
            output_format="jpeg", http=("bytes-jpeg",), est_s=300),
)
DEVICE = "cuda"  # --tiny runs the whole script on the CPU with shrunk models
DTYPE = torch.float16
# least seconds of timed work behind each throughput figure, diffusers' and the engine's alike: a
# one-step SD-Turbo batch takes under a second, and two such calls moved diffusers' best between
# 41.2 and 44.3 img/s from one call to the next (run 8). --tiny: 0.5
MIN_TIMED_S = 5.0


def darkroom_model(
    arch: Architecture, case: Case, graphs: bool, compiled: bool = False, dtype: torch.dtype | None = None,
    vae_accel: str = "off", text_graphs: bool = False, tiny_vae: torch.nn.Module | None = None,
    vae_channels_last: bool = True,
) -> object:
    from pipelines.accel import (
        enable_compile,
        enable_cuda_graphs,
        enable_text_encoder_graphs,
        enable_vae_decoder_accel,
    )
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
    if text_graphs:
        enable_text_encoder_graphs(model)
    if tiny_vae is not None:  # served beside the KL decoder, for requests with "decoder": "tiny"
        from pipelines.vae import TinyAutoencoder

        model.tiny_vae = TinyAutoencoder(tiny_vae)  # type: ignore[attr-defined]
    enable_vae_decoder_accel(model, vae_accel, channels_last=vae_channels_last)
    return model


def engine_settings(case: Case, overlap: bool = False, pipeline: bool = False) -> object:
    from server.settings import Settings

    return Settings(decode_overlap=overlap, decode_pipeline=pipeline,
        device=DEVICE, dtype=str(DTYPE).removeprefix("torch."), max_batch=case.engine_max_batch, max_active=case.engine_max_batch * 2,
        max_queue=4096, max_batch_pixels=case.engine_max_batch * case.side * case.side,
        request_timeout_s=3600, preview_every=0, encode_threads=8, max_steps=1000, max_num_images=case.engine_max_batch,
    )


def spec_for(case: Case, seed: int, interval: tuple[float, float] | None = None, output_format: str = "png",
             decoder: str = "full") -> object:
    from server.generation import GenerationSpec

    return GenerationSpec(
        id=uuid.uuid4().hex, model=case.name, prompt=PROMPT, negative_prompt="", sampler=case.sampler,
        steps=case.steps, guidance=case.guidance if case.guidance > 0 else 1.0, seed=seed,
        width=case.side, height=case.side, num_images=1, output_format=output_format, timeout_s=3600,
        guidance_interval=interval, decoder=decoder,
    )


async def _serve_all(engine: object, specs: list[object]) -> tuple[float, list[object]]:
    start = time.perf_counter()
    futures = [engine.submit(s) for s in specs]  # type: ignore[attr-defined]
    results = await asyncio.gather(*futures)
    return time.perf_counter() - start, list(results)


def run_engine(engine: object, specs: list[object]) -> tuple[float, list[object]]:
    return asyncio.run(_serve_all(engine, specs))


def image_pixels(data: bytes) -> np.ndarray:
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


RESPONSE_ARGS = {
    "json-png": ["--output-format", "png"],
    "json-jpeg": ["--output-format", "jpeg"],
    "bytes-jpeg": ["--output-format", "jpeg", "--binary"],
}


def http_load(engine: object, settings: object, case: Case, requests: int, kinds: tuple[str, ...],
              poisson: bool, label: str = "darkroom", decoder: str = "full") -> dict:
    """Load through HTTP: uvicorn in this process, bench/load.py clients in another process.

    A closed loop at the case's concurrency (saturated images/s) per response kind, then, with
    `poisson`, in the first kind: one client at a time (the unloaded latency through HTTP, the same
    response kind) and Poisson arrivals at 80% of the highest closed-loop rate in that kind (p99
    latency under load). With --profile-http, one more closed loop in the first kind runs under
    bench/server_profile.py (this process is the server); its report carries the profile.
    """
    import uvicorn

    from server.app import create_app

    port = free_port()
    app = create_app(settings, engine=engine)  # type: ignore[arg-type]
    # as `darkroom serve` runs it: no access log (create_app's lifespan freezes the collector)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    common = [
        sys.executable, "-m", "bench.load", "--url", f"http://127.0.0.1:{port}", "--json",
        "--sampler", case.sampler, "--steps", str(case.steps), "--width", str(case.side), "--height", str(case.side),
        "--guidance", str(case.guidance if case.guidance > 0 else 1.0), "--warmup", "2", "--decoder", decoder,
    ]
    runs = {f"closed:{kind}": common + RESPONSE_ARGS[kind] + ["--mode", "closed", "--concurrency", str(case.http_concurrency),
                                                           "--requests", str(requests)] for kind in kinds}
    for clients in EXTRA_CONCURRENCY:  # more requests in flight: does the closed loop's round trip bound it?
        runs[f"closed{clients}:{kinds[0]}"] = common + RESPONSE_ARGS[kinds[0]] + [
            "--mode", "closed", "--concurrency", str(clients), "--requests", str(max(requests, 3 * clients))]
    if PROFILE_DIR is not None:
        runs[f"profiled:{kinds[0]}"] = runs[f"closed:{kinds[0]}"]
    if poisson:
        runs[f"unloaded:{kinds[0]}"] = common + RESPONSE_ARGS[kinds[0]] + ["--mode", "closed", "--concurrency", "1",
                                                                          "--requests", str(UNLOADED_REQUESTS)]
        runs[f"open:{kinds[0]}"] = []  # its rate comes from the closed loops above
    reports: dict = {}
    try:
        for name, cmd in runs.items():
            if name.startswith("open:"):
                rates = [r.get("images_per_s", 0.0) for n, r in reports.items() if n.startswith("closed") and n.endswith(name[4:])]
                if not max(rates, default=0.0):
                    continue
                cmd = common + RESPONSE_ARGS[kinds[0]] + ["--mode", "open", "--rate", f"{0.8 * max(rates):.3f}",
                                                          "--duration", str(POISSON_S)]
            profile = None
            if name.startswith("profiled:"):
                from bench.server_profile import ServerProfile

                assert PROFILE_DIR is not None
                profile = ServerProfile(PROFILE_DIR, f"{case.name}_{label}_{name.split(':')[1]}")
            with profile or contextlib.nullcontext():
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            try:
                reports[name] = json.loads(proc.stdout[proc.stdout.index("{"):])
            except ValueError:
                reports[name] = {"error": (proc.stdout + proc.stderr)[-800:]}
            print(f"  http {name}: {json.dumps(reports[name])[:400]}", flush=True)
            if profile is not None:
                reports[name]["profile"] = profile.summary
                print(f"  profile: {json.dumps(profile.summary)[:1500]}", flush=True)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return reports


POISSON_S = 15  # seconds of Poisson arrivals (--tiny: 4; --poisson-s)
UNLOADED_REQUESTS = 24  # one at a time through HTTP: the unloaded latency the Poisson p99 is compared with
PROFILE_DIR: Path | None = None  # --profile-http: where the server profiles' text summaries go
HTTP_KINDS: set[str] | None = None  # --http-kinds: only these response kinds of each variant
EXTRA_CONCURRENCY: tuple[int, ...] = ()  # --extra-concurrency: more closed loops in the first kind


class Budget:
    """The wall-clock budget of the whole call: tasks that would not fit are skipped and noted."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, estimate_s: float) -> bool:
        return self.left() >= estimate_s


def variant_estimate_s(variant: Variant, took_s: dict[tuple[bool, str], float]) -> float:
    """A variant's budget estimate: its est_s, or less when a variant compiling the same graphs already ran in this
    call (took_s[graphs_key]: its whole time, compilation included), since its compilation is then warm."""
    return min(variant.est_s, took_s.get(variant.graphs_key, float("inf")))


def _free_cuda() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bench_variant(arch: Architecture, case: Case, variant: Variant, reference: np.ndarray, ceiling: float,
                  peak_diffusers: float, http: bool, tiny_vae: torch.nn.Module | None = None) -> tuple[list[dict], list[dict]]:
    """One variant: warm-up, batch-1 latency, saturated images/s in-process, then its HTTP runs."""
    from server.engine import Engine

    records: list[dict] = []
    notes: list[dict] = []
    reset_peak()
    torch.backends.cudnn.benchmark = variant.cudnn_benchmark  # process-wide: reset below, so no other run inherits it
    model = darkroom_model(arch, case, variant.graphs, variant.compiled_unet, vae_accel=variant.vae_accel,
                           text_graphs=variant.text_graphs, tiny_vae=tiny_vae if variant.tiny_vae else None,
                           vae_channels_last=variant.vae_channels_last)
    decoder = "tiny" if variant.tiny_vae else "full"
    settings = engine_settings(case, overlap=variant.overlap, pipeline=variant.pipeline)
    engine = Engine([model], settings)  # type: ignore[list-item]
    engine.start()
    try:
        interval, fmt = variant.interval, variant.output_format
        warm_start = time.perf_counter()
        if variant.compiled_unet:  # the server's own start-up warm-up: one pass of every bucket (compiles each)
            asyncio.run(engine.warm_up())
        # warm-up: every bucket size the runs will use (captures the CUDA graphs, compiles)
        for n in sorted({case.engine_max_batch, 1, max(1, case.engine_max_batch // 2)}, reverse=True):
            run_engine(engine, [spec_for(case, 1000 + i, interval, fmt, decoder) for i in range(n)])
        if variant.compiled_unet:  # mixed steps reach buckets the uniform warm-up does not (compile each now)
            run_engine(engine, [spec_for(case, 2000 + i, interval, fmt, decoder) for i in range(case.saturate_requests)])
        warmup_s = time.perf_counter() - warm_start
        singles = [run_engine(engine, [spec_for(case, 0, interval, "png", decoder)]) for _ in range(3)]
        latency = float(np.median([s for s, _ in singles]))
        image = image_pixels(singles[0][1][0].images[0])
        diff = np.abs(image - reference)
        exact = bool(diff.max() <= 16 and diff.mean() <= 1.0) and variant.exact_mode
        rounds: list[float] = []  # saturated rounds until MIN_TIMED_S of them: rate = all images / all time
        while not rounds or sum(rounds) < MIN_TIMED_S:
            elapsed, results = run_engine(engine, [spec_for(case, i, interval, fmt, decoder) for i in range(case.saturate_requests)])
            rounds.append(elapsed)
        elapsed = float(np.median(rounds))
        ips = case.saturate_requests * len(rounds) / sum(rounds)
        peak = peak_gib()
        encode_s = float(np.median([r.timings.get("encode_s", 0.0) for r in results]))
        levers = {"graphs": variant.graphs, "compiled_unet": variant.compiled_unet, "vae_accel": variant.vae_accel,
                  "decode_overlap": variant.overlap,
                  "decode_pipeline": variant.pipeline, "guidance_interval": variant.interval,
                  "cudnn_benchmark": variant.cudnn_benchmark, "text_encoder_graphs": variant.text_graphs,
                  "decoder": decoder, "vae_channels_last": variant.vae_channels_last and variant.vae_accel == "compile"}
        for mode, lat, rate in (("batch1", latency, 1 / latency), ("saturated", elapsed, ips)):
            records.append({"case": case.name, "system": variant.label, "mode": mode, "exact": exact,
                            "images_per_s": round(rate, 3), "latency_s": round(lat, 4),
                            "requests": 1 if mode == "batch1" else case.saturate_requests,
                            "output_format": "png" if mode == "batch1" else fmt, "levers": levers,
                            "max_abs_diff_vs_diffusers_uint8": int(diff.max()),
                            "mean_abs_diff_vs_diffusers_uint8": round(float(diff.mean()), 3)})
        rows_per_image = 2 if case.guidance > 0 else 1
        tflops = 2 * case.unet_gmac * 1e9 * rows_per_image * case.steps * ips / 1e12
        notes.append({"case": case.name, "system": variant.label, "warmup_s": round(warmup_s, 1), "saturated_rounds": len(rounds),
                      "peak_gib": round(peak, 2), "peak_gib_diffusers": round(peak_diffusers, 2),
                      "unet_tflops_saturated": round(tflops, 1), "mfu": round(tflops / ceiling, 3),
                      "encode_s_median_saturated": round(encode_s, 5), "output_format": fmt})
        print(f"  {variant.label:28s} batch1 {latency:7.3f} s | saturated {ips:7.2f} img/s ({fmt}, encode {encode_s * 1e3:.1f} ms) "
              f"| diff max {diff.max()} mean {diff.mean():.2f} | warm-up {warmup_s:.1f} s", flush=True)
        kinds = tuple(k for k in variant.http if HTTP_KINDS is None or k in HTTP_KINDS)
        if http and kinds:
            load = http_load(engine, settings, case, case.saturate_requests * 2, kinds, variant.poisson, variant.label, decoder)
            unloaded = next((r.get("latency_p50_s") for n, r in load.items() if n.startswith("unloaded:")), None)
            for name, report in load.items():
                loop, kind = name.split(":")
                if "images_per_s" not in report or loop == "profiled":  # the profiled run's figures stay in notes
                    continue
                mode = {"open": "poisson80", "unloaded": "batch1"}.get(loop, "saturated")
                record = {"case": case.name, "system": "darkroom-http", "mode": mode,
                          "exact": exact, "images_per_s": round(report["images_per_s"], 3),
                          "latency_s": round(report.get("latency_p50_s") or 0.0, 4), "p99_s": report.get("latency_p99_s"),
                          "response": kind, "engine": variant.label, "levers": levers,
                          "body_bytes_mean": report.get("body_bytes_mean"), "failures": report.get("failures")}
                if loop.startswith("closed"):
                    record["concurrency"] = report.get("settings", {}).get("concurrency", case.http_concurrency)
                    record["client_cpu_s"], record["wall_s"] = report.get("client_cpu_s"), report.get("wall_s")
                elif loop == "open" and report.get("latency_p99_s"):
                    # against one request at a time through HTTP in the same response kind (before run 14: the
                    # in-process batch-1 latency, whose PNG encoding of a noise image took ~50 ms)
                    base = unloaded or latency
                    record.update(unloaded_latency_s=round(base, 4), unloaded_source="http" if unloaded else "in-process",
                                  p99_over_unloaded=round(report["latency_p99_s"] / base, 2),
                                  p50_over_unloaded=round((report.get("latency_p50_s") or 0.0) / base, 2),
                                  rate_per_s=report.get("settings", {}).get("rate"), wall_s=report.get("wall_s"))
                records.append(record)
            notes.append({"case": case.name, "system": variant.label, "http_load": load})
    finally:
        engine.stop()
        torch.backends.cudnn.benchmark = False
        from pipelines.accel import disable_vae_decoder_accel

        disable_vae_decoder_accel(model)  # the wrapper sits on the shared modules (arch.vae, tiny_vae): undo it
    return records, notes


def bench_case(
    case: Case, tokenizer_dir: Path, ceiling: float, http: bool, budget: Budget, compile_engine: bool = False,
    only: list[str] | None = None, emit: Callable[[list[dict], list[dict]], None] | None = None,
) -> tuple[list[dict], list[dict]]:
    """The diffusers baseline of a case, then each of its variants (each isolated: a failure is noted).

    `emit(records, notes)` gets the case's figures so far after the baseline and after each
    variant (the caller saves them), so a call cut by its time limit keeps what it measured.
    """
    records: list[dict] = []
    notes: list[dict] = []

    def flush() -> None:
        if emit is not None:
            emit(records, notes)
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
        seconds = time_pipeline(pipe, batch, case.steps, case.guidance, case.side, repeats=2 if batch > 1 else 3,
                                min_seconds=MIN_TIMED_S)
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
    _free_cuda()
    if best is not None:
        notes.append({"case": case.name, "diffusers_best": best})
    flush()

    variants = list(VARIANTS[case.name]) + (list(COMPILED_VARIANTS) if compile_engine else [])
    if only is not None:  # --variants: these, in its order (the budget guard skips from the end)
        variants = sorted((v for v in variants if v.label in only), key=lambda v: only.index(v.label))
    tiny_vae = None
    if any(v.tiny_vae for v in variants):  # fast mode's decoder, and diffusers with the same decoder swapped in
        tiny_vae = build_tiny_vae(device=DEVICE, dtype=DTYPE, tiny=DEVICE == "cpu")
        pipe = make_pipeline(arch, tokenizer_dir, euler_trailing=case.baseline_scheduler == "euler_trailing", vae=tiny_vae)
        for batch in (1, case.batches[-1]):
            seconds = time_pipeline(pipe, batch, case.steps, case.guidance, case.side, repeats=2 if batch > 1 else 3,
                                    min_seconds=MIN_TIMED_S)
            records.append({"case": case.name, "system": "diffusers-tinyvae", "mode": "batch1" if batch == 1 else "saturated",
                            "batch": batch, "exact": False, "images_per_s": round(batch / seconds, 3),
                            "latency_s": round(seconds, 4), "decoder": "tiny"})
            print(f"  diffusers + tiny decoder batch={batch:3d} {seconds:7.3f} s  {batch / seconds:7.2f} img/s", flush=True)
        del pipe
        _free_cuda()
        flush()

    # (b) + (c) Darkroom's engine, one variant per lever set, and HTTP
    took_s: dict[tuple[bool, str], float] = {}
    for variant in variants:
        estimate = variant_estimate_s(variant, took_s)
        if not budget.allows(estimate):
            print(f"  {variant.label}: skipped, {budget.left():.0f} s left of the budget (needs ~{estimate:.0f} s)", flush=True)
            notes.append({"case": case.name, "system": variant.label, "skipped": f"budget: {budget.left():.0f} s left"})
            continue
        try:
            start = time.monotonic()
            got, more = bench_variant(arch, case, variant, reference, ceiling, peak_diffusers, http, tiny_vae)
            took_s[variant.graphs_key] = time.monotonic() - start
            records += got
            notes += more
        except Exception as exc:  # noqa: BLE001 - a failing variant keeps the other variants' figures
            import traceback

            traceback.print_exc()
            notes.append({"case": case.name, "system": variant.label, "error": repr(exc)[:500]})
        _free_cuda()
        flush()
    del arch
    _free_cuda()
    return records, notes


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
        engine = record.get("engine", record["system"])
        if record["case"] in verdicts and engine.startswith("darkroom") and "fast" not in engine:
            record["exact"], record["exact_basis"] = verdicts[record["case"]]


def run_probe(name: str, tokenizer_dir: Path) -> dict:
    """probe:<case>[:fp32][:g=W]: our path vs diffusers stage by stage (bench/probe.py)."""
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
        return {"probe": name, "stages": probe(arch, model, case, tokenizer_dir)}
    finally:
        del arch
        _free_cuda()


def run_levers(name: str, ceiling: float, compile_too: bool) -> list[dict]:
    """levers (UNet: graphs, SDPA backends, channels-last, compile), vae_levers, fp8."""
    from bench.levers import measure_fp8, measure_vae_levers

    arch = build("sd15")
    try:
        if name == "levers":
            return measure_levers("sd15", arch.unet, arch.config, 64, [2, 8, 32], 401.6, ceiling, compile_too=compile_too)
        if name == "vae_levers":
            return measure_vae_levers(arch.vae, 64, 8, VAE_DECODER_GMAC_512, ceiling, compile_too=compile_too)
        return measure_fp8("sd15", arch.unet, arch.config, 64, 32, 401.6, ceiling, compile_too=compile_too)
    finally:
        del arch
        _free_cuda()


def run_xformers(ceiling: float) -> list[dict]:
    """The xformers lever in a child process with the optional wheel on its path (bench/xformers_probe.py)."""
    import glob
    import os

    wheels = sorted(glob.glob(".whl_e/optional/xformers-*.whl"))
    if not wheels:
        return [{"model": "sd15", "lever": "xformers", "rows": 0, "error": "no xformers wheel in .whl_e/optional"}]
    target = Path(tempfile.mkdtemp(prefix="darkroom_xformers_"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                              "--target", str(target), *wheels], capture_output=True, text=True, check=False)
    if install.returncode != 0:
        return [{"model": "sd15", "lever": "xformers", "rows": 0, "error": f"install: {install.stderr[-300:]}"}]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.run([sys.executable, "-m", "bench.xformers_probe", "--ceiling", f"{ceiling:.1f}"],
                           capture_output=True, text=True, timeout=240, env=env, check=False)
    print(child.stdout[-3000:], child.stderr[-1500:], flush=True)
    for line in child.stdout.splitlines():
        if line.startswith("RECORDS "):
            return list(json.loads(line.removeprefix("RECORDS ")))
    return [{"model": "sd15", "lever": "xformers", "rows": 0,
             "error": f"exit {child.returncode}: {(child.stdout + child.stderr)[-300:]}"}]


VAE_DECODER_GMAC_512 = 1257.0  # per image at 512x512 (../shared/reference/ANCHORS.md)
TASK_ESTIMATES_S = {"levers": 150, "vae_levers": 40, "xformers": 40, "fp8": 90, "fp8_quality": 40}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", default="sd_turbo,sd15,vae_levers,fp8,fp8_quality,probe:sd15:fp32,probe:sd_turbo:fp32,xformers",
                        help="in order: case names (sd_turbo, sd15, sdxl), probe:<case>[:fp32], levers, vae_levers, "
                             "xformers, fp8, fp8_quality")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variant labels to run, in this order (default: every variant of each case; VARIANTS)")
    parser.add_argument("--budget-s", type=float, default=1e9, help="wall-clock budget of the whole call")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--compile-engine", action="store_true",
                        help="also serve with a torch.compile'd UNet, exact and fast (about a minute per bucket shape)")
    parser.add_argument("--fast-interval", default=None,
                        help="sigma_lo,sigma_hi of every fast variant (default 1,1e9: guide while sigma >= 1)")
    parser.add_argument("--http-kinds", default=None, help="comma-separated response kinds to run (default: each variant's)")
    parser.add_argument("--extra-concurrency", default="",
                        help="comma-separated client counts of further closed HTTP loops in each variant's first kind")
    parser.add_argument("--profile-http", action="store_true",
                        help="one more closed HTTP run per variant under a CPU profile of the server (bench/server_profile.py)")
    parser.add_argument("--poisson-s", type=float, default=None, help="seconds of Poisson arrivals (default 15)")
    parser.add_argument("--tiny", action="store_true", help="shrunk models on the CPU: checks the script runs")
    parser.add_argument("--side", type=int, default=None, help="override every case's image side (with --tiny)")
    parser.add_argument("--run-name", default="", help="suffix of the results file name, e.g. run4")
    args = parser.parse_args()
    budget = Budget(args.budget_s)
    global DEVICE, DTYPE, POISSON_S, MIN_TIMED_S, PROFILE_DIR, HTTP_KINDS, EXTRA_CONCURRENCY, FAST_INTERVAL, COMPILED_VARIANTS
    if args.fast_interval:
        lo, hi = (float(x) for x in args.fast_interval.split(","))
        FAST_INTERVAL = (lo, min(hi, 1e9))  # finite: the request schema's JSON has no inf
        for key, variants in list(VARIANTS.items()):
            VARIANTS[key] = tuple(replace(v, interval=FAST_INTERVAL) if v.interval else v for v in variants)
        COMPILED_VARIANTS = tuple(replace(v, interval=FAST_INTERVAL) if v.interval else v for v in COMPILED_VARIANTS)
    HTTP_KINDS = set(args.http_kinds.split(",")) if args.http_kinds else None
    EXTRA_CONCURRENCY = tuple(int(c) for c in args.extra_concurrency.split(",") if c)
    if args.tiny:
        DEVICE, DTYPE, POISSON_S, MIN_TIMED_S = "cpu", torch.float32, 4, 0.5
        for key, case in list(CASES.items()):
            CASES[key] = replace(case, side=args.side or 64, steps=min(case.steps, 3), batches=case.batches[:2],
                                 engine_max_batch=4, saturate_requests=8, http_concurrency=4)
        for key, variants in list(VARIANTS.items()):
            VARIANTS[key] = tuple(replace(v, est_s=1.0) for v in variants)
        COMPILED_VARIANTS = tuple(replace(v, est_s=1.0) for v in COMPILED_VARIANTS)
    if args.poisson_s:
        POISSON_S = args.poisson_s
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    PROFILE_DIR = out_dir / "profiles" if args.profile_http else None

    import diffusers

    from pipelines.text import write_hf_clip_tokenizer_files

    card = card_name() if DEVICE == "cuda" else "cpu-tiny"
    ceiling = matmul_ceiling_tflops() if DEVICE == "cuda" else 1.0
    print(f"card: {card}  torch {torch.__version__}  diffusers {diffusers.__version__}  ceiling {ceiling:.0f} TFLOP/s", flush=True)
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="darkroom_clip_"))  # not under --out: only results come back
    write_hf_clip_tokenizer_files(tokenizer_dir)
    result: dict = {"card": card, "torch": torch.__version__, "diffusers": diffusers.__version__,
                    "matmul_ceiling_tflops": round(ceiling, 1), "records": [], "levers": [], "notes": []}
    suffix = f"_{args.run_name}" if args.run_name else ""
    path = out_dir / f"gpu_{card.replace(' ', '_')}{suffix}.json"
    only = args.variants.split(",") if args.variants else None

    def save() -> None:
        path.write_text(json.dumps(result, indent=1))

    for name in args.tasks.split(","):
        started = time.perf_counter()
        estimate = 1.0 if args.tiny else TASK_ESTIMATES_S.get(name, 20.0)
        if name not in CASES and not budget.allows(estimate):
            print(f"== {name}: skipped, {budget.left():.0f} s left of the budget", flush=True)
            result["notes"].append({"task": name, "skipped": f"budget: {budget.left():.0f} s left"})
            continue
        try:
            if name.startswith("probe:"):
                result["notes"].append(run_probe(name, tokenizer_dir))
            elif name == "xformers":
                if DEVICE == "cuda":
                    print("== xformers (child process)", flush=True)
                    result["levers"] += run_xformers(ceiling)
            elif name in ("levers", "vae_levers", "fp8"):
                if DEVICE == "cuda":
                    print(f"== {name}", flush=True)
                    result["levers"] += run_levers(name, ceiling, compile_too=not args.no_compile)
            elif name == "fp8_quality":
                from bench.fp8_quality import fp8_quality

                print("== fp8_quality: bundled model, bf16 vs fp8 linears, judge accuracy", flush=True)
                quality = fp8_quality(DEVICE, captions=4 if args.tiny else 256, batch=256)
                print(f"  {json.dumps(quality)[:600]}", flush=True)
                result["fp8_quality"] = quality
            else:
                before = (list(result["records"]), list(result["notes"]))

                def emit(records: list[dict], notes: list[dict], before: tuple[list, list] = before) -> None:
                    result["records"], result["notes"] = before[0] + records, before[1] + notes
                    save()

                emit(*bench_case(CASES[name], tokenizer_dir, ceiling, http=not args.no_http, budget=budget,
                                 compile_engine=args.compile_engine, only=only, emit=emit))
        except Exception as exc:  # noqa: BLE001 - one failing task must not lose the others' figures
            import traceback

            traceback.print_exc()
            result["notes"].append({"task": name, "error": repr(exc)[:500]})
        result["notes"].append({"task": name, "seconds": round(time.perf_counter() - started, 1)})
        _free_cuda()
        save()
    result["environment"] = environment()  # last: an optional package that breaks on import costs nothing else
    annotate_exactness(result)
    save()
    print(f"\nwrote {path}; {budget.left():.0f} s of the budget left")
    print("case      system                       mode       response    img/s    latency_s  exact")
    for r in result["records"]:
        system = r["system"] if "engine" not in r else f"{r['system']}<{r['engine']}>"
        print(f"{r['case']:9s} {system[:28]:28s} {r['mode']:10s} {r.get('response', ''):10s} {r['images_per_s']:8.2f} "
              f"{r['latency_s']:9.3f}  {r['exact']}")
    return 0


def environment() -> dict:
    """Versions of the optional packages the levers use (None: not importable here)."""
    import importlib

    found: dict = {}
    for module in ("torchvision", "torchao", "xformers"):
        try:
            found[module] = getattr(importlib.import_module(module), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - a broken optional package is a finding, not a crash
            found[module] = None if isinstance(exc, ImportError) else f"{type(exc).__name__}: {str(exc)[:120]}"
    if torch.cuda.is_available():
        from server.images import encode_jpeg_cuda

        found["nvjpeg_encode"] = encode_jpeg_cuda(torch.zeros(1, 3, 64, 64, dtype=torch.uint8, device="cuda")) is not None
    return found


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
