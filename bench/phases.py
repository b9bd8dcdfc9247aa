"""Where a batch-1 call's time goes on CUDA, phase by phase, for the bundled teacher and one-step student.

server.commands.eval.generate (the path students_eval times) runs four phases: text encoding (the prompt, and
the empty negative in the same encoder pass when the call is guided), the initial noise (seeded CPU generator, copied to the card), the
sampler's denoiser calls, and the decode (decoder input, VAE decoder, clamp). Each is timed here alone,
with the card synchronised before and after it, as the median of `--reps` calls; "total" is the whole
call without the inner synchronisations, and "sync" the cost of one synchronisation of an idle card
(the floor every timed call pays), and "syncs_per_call" the host-card synchronisations of one call (torch's sync
debug mode; their file:line in "STAGE/MODEL/sync_sites"). Then torch.profiler records each model's calls: the aten operators and CUDA
runtime calls per call (each launch is host time at batch 1) and the table of the costliest.

Each stage is timed at batch 1 and per image at `--batch` prompts per call. Stages: "eager" (no lever), "served" (UNet CUDA graphs, the default decoder lever, the text encoder's graphs: the engine's CUDA
defaults; on a CPU also the decoder in bf16 where settings.vae_cpu_bf16 "auto", an opt-in, turns it on) and "compile_graphs" (the same
with every decoder compiled and replayed per bucket as a CUDA graph).

    python -m bench.phases --out DIR [--reps 100] [--batch 256]   # DIR/phases.json, DIR/phases_profiles.txt
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from bench.timing import card_name, sync, time_call
from server.commands.eval import decode, denoise, encode_prompts, generate, initial_noise

MODELS = (("bundled", "ddim", 25, 4.0), ("bundled-turbo", "turbo", 1, 1.0))
PROMPT = "a small red circle left of a large blue square"


def timed(call: Callable[[], object], reps: int) -> float:
    """Median milliseconds of `call` between two synchronisations, after two warm-up calls."""
    return time_call(call, warmup=2, repeats=reps) * 1e3


def phases(model: object, sampler: str, steps: int, guidance: float, reps: int, batch: int = 1) -> dict[str, float]:
    """Milliseconds per image per phase of generate(model, [PROMPT] * batch, ...) (its own four phases), each
    timed alone, and the whole call."""
    prompts = [PROMPT] * batch
    state: dict[str, object] = {}

    def encode() -> None:
        state["gc"] = encode_prompts(model, prompts, guidance)

    def noise() -> None:
        state["x"], state["sigmas"], state["generator"] = initial_noise(model, batch, sampler, steps, seed=0)

    def run_sampler() -> None:
        state["out"] = denoise(model, state["x"], state["sigmas"], state["generator"], sampler, state["gc"])  # type: ignore[arg-type]

    def decode_images() -> None:
        decode(model, state["out"], state["sigmas"])  # type: ignore[arg-type]

    result = {name: timed(call, reps) for name, call in (("encode", encode), ("noise", noise),
                                                          ("denoise", run_sampler), ("decode", decode_images))}
    result["sum"] = sum(result.values())
    result["total"] = timed(lambda: generate(model, prompts, sampler, steps, guidance, seed=0), reps)
    return {name: ms / batch for name, ms in result.items()}


def sync_sites(call: Callable[[], object]) -> list[str]:
    """file:line of each host-card synchronisation during one call (torch's sync debug mode; CUDA only)."""
    import warnings

    if not torch.cuda.is_available():
        return []
    call()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def profile_table(model: object, sampler: str, steps: int, guidance: float, calls: int) -> tuple[dict[str, float], str]:
    """Per call: aten operators (nested ones too) and CUDA runtime calls (kernel and graph launches, copies,
    synchronisations); and the profiler's table of the costliest by self CPU time, over `calls` calls."""
    from torch.profiler import ProfilerActivity, profile

    generate(model, [PROMPT], sampler, steps, guidance, seed=0)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            generate(model, [PROMPT], sampler, steps, guidance, seed=0)
        sync()
    averages = prof.key_averages()
    counts = {"aten_ops_per_call": sum(e.count for e in averages if e.key.startswith("aten::")) / calls,
              "cuda_runtime_calls_per_call": sum(e.count for e in averages if e.key.startswith("cuda")) / calls}
    return counts, averages.table(sort_by="self_cpu_time_total", row_limit=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--manifest", type=Path, default=Path("weights_manifest.yaml"))
    parser.add_argument("--reps", type=int, default=100, help="timed calls per phase (the teacher: a fifth)")
    parser.add_argument("--batch", type=int, default=256, help="also per image at this many prompts per call (1: not)")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script (the levers are CUDA-only)")
    args = parser.parse_args()
    from pipelines.accel import (
        disable_vae_decoder_accel,
        enable_cpu_bf16_decoder,
        enable_cuda_graphs,
        enable_text_encoder_graphs,
        enable_vae_decoder_accel,
    )
    from pipelines.loading import load_from_manifest

    args.out.mkdir(parents=True, exist_ok=True)
    models = {mid: load_from_manifest(mid, args.manifest, args.weights, device=torch.device(args.device),
                                 dtype=torch.float16 if args.device == "cuda" else torch.float32)
              for mid, *_ in MODELS}
    result: dict[str, object] = {"card": card_name() if args.device == "cuda" else "cpu", "prompt_words": len(PROMPT.split()),
                                 "sync_ms": timed(lambda: None, 1000)}
    tables = []
    for stage in ("eager", "served", "compile_graphs"):
        for model in models.values():
            if stage == "served":
                enable_cuda_graphs(model)
                enable_vae_decoder_accel(model, "auto")
                enable_cpu_bf16_decoder(model, "auto")
                enable_text_encoder_graphs(model)
            elif stage == "compile_graphs":
                disable_vae_decoder_accel(model)
                enable_vae_decoder_accel(model, "compile_graphs")
        for mid, sampler, steps, guidance in MODELS:
            if args.batch > 1:  # per image at the batched size first: the throughput-bound end
                try:
                    row = phases(models[mid], sampler, steps, guidance, max(3, args.reps // 20), args.batch)
                    result[f"{stage}/batch{args.batch}/{mid}"] = row
                    print(stage, f"batch {args.batch}", mid, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
                except (RuntimeError, ValueError, TypeError, AssertionError, torch.cuda.OutOfMemoryError) as e:
                    result[f"{stage}/batch{args.batch}/{mid}"] = {"error": f"{type(e).__name__}: {e}"}
            reps = args.reps if steps == 1 else max(5, args.reps // 5)
            try:
                row = phases(models[mid], sampler, steps, guidance, reps)
                counts, table = profile_table(models[mid], sampler, steps, guidance, 20 if steps == 1 else 2)
            except (RuntimeError, ValueError, TypeError, AssertionError) as e:  # one stage's failure keeps the others
                result[f"{stage}/{mid}"] = {"error": f"{type(e).__name__}: {e}"}
                continue
            row.update(counts)
            sites = sync_sites(lambda: generate(models[mid], [PROMPT], sampler, steps, guidance, seed=0))  # noqa: B023
            row["syncs_per_call"] = len(sites)
            result[f"{stage}/{mid}/sync_sites"] = sorted(set(sites))
            result[f"{stage}/{mid}"] = row
            tables.append(f"== {stage} {mid} {json.dumps(counts)}\n{table}\n")
            print(stage, mid, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    (args.out / "phases.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "phases_profiles.txt").write_text("".join(tables))
    print(f"sync {result['sync_ms']:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
