"""Teacher vs one-step students: judge accuracy, judge-space FID and latency per image.

    python -m training.students_eval --weights W --out DIR [--captions 512] [--device cuda]

W is a weights root with manifest.yaml (from `python -m training.export_students RUN W`), or the
repository's weights/ with --manifest weights_manifest.yaml. Rows: the teacher (bundled, DDIM 25,
w = 4), the LCM student (bundled-lcm, 1 / 2 / 4 steps) and the one-step student (bundled-turbo,
sampler turbo; DMD since call 8, ADD before), students without a CFG pass (w = 1). Accuracy (whole caption and per attribute) and FID come
from server.commands.eval.evaluate on the same `--captions` seen and held-out captions per row.

Latency per image goes through the same serving path (server.commands.eval.generate: text
encoder, sampler, UNet, VAE decoder; eager), after warm-up, as the median of repeated calls, with
torch.cuda.synchronize around each on CUDA: "batch 1" is one prompt per call, "batched" is
`--latency-batch` prompts per call divided by that count. The rows' calls alternate (teacher,
student, teacher, ...: interleaved_latency), so a change of the host's speed during the run weighs
on each alike. On CUDA batch 1 is measured again with
the UNet replayed as CUDA graphs (pipelines.accel, the engine's default there): at batch 1 the
fixed costs (text encoder, VAE decoder, launches) bound the students' speed-up. Then once more "as
served": also with the engine's default decoder lever (settings.vae_accel "auto": the decoder
compiled for models of few default steps, so for the students and not the 25-step teacher). Then
("text"), also the CLIP text encoder replayed as CUDA graphs (settings.text_encoder_graphs); then
("text_vaegraphs") the same with every model's decoder replayed as CUDA graphs instead of compiled
(settings.vae_accel "graphs": at batch 1 a tiny decoder is launch-bound, where compile's host work weighs); last
("text_vaecompilegraphs") every model's decoder compiled and its kernels replayed as CUDA graphs (vae_accel
"compile_graphs"), the teacher's too: both models with every lever.
--latency-only skips the judge (students_latency.json only), e.g. for CPU figures. --vae-cpu-bf16 on (or auto) runs
every model's VAE decoder in bf16 on the CPU (pipelines.accel.CpuBf16Decoder), as the server does when its opt-in
settings.vae_cpu_bf16 is on (or auto, on a CPU with bf16 matrix units), for the accuracy and the latency alike; the
JSON records the mode and, per row, whether the model's decoder ran in bf16. Off by default: the fp32 figures of
earlier calls.
--decoder tiny draws every row through its model's tiny decoder (fast mode, `"decoder": "tiny"`: the manifest's
tiny_vae entry, weights/bundled_tiny_vae for the bundled models) in place of its KL decoder: accuracy, FID and every
latency stage then measure fast mode, the teacher's too.

Writes DIR/students_eval.json, DIR/students_eval.md and DIR/students_grid.png (rows: 8 seen
captions; columns: teacher, LCM 1, 2, 4, one-step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from server.commands.eval import Config, evaluate, generate, load_judge
from training.data import sample_scenes

# batch-1 latency again on CUDA, per stage (row keys latency_batch1_STAGE_s, speedup_batch1_STAGE) -> its column title
CUDA_STAGES = {"graphs": "batch 1, UNet CUDA graphs", "served": "batch 1 as served (+ decoder lever)",
               "text": "batch 1, + text encoder graphs", "text_vaegraphs": "batch 1, text graphs, decoder as CUDA graphs",
               "text_vaecompilegraphs": "batch 1, text graphs, decoder compiled + CUDA graphs",
               "compiled": "batch 1, and the UNet compiled inside its graphs (compile_unet, as docker-compose serves)"}

# (manifest id, sampler, steps, guidance w, row name)
ROWS: tuple[tuple[str, str, int, float, str], ...] = (
    ("bundled", "ddim", 25, 4.0, "teacher DDIM 25, w=4"),
    ("bundled-lcm", "lcm", 1, 1.0, "LCM 1 step"),
    ("bundled-lcm", "lcm", 2, 1.0, "LCM 2 steps"),
    ("bundled-lcm", "lcm", 4, 1.0, "LCM 4 steps"),
    ("bundled-turbo", "turbo", 1, 1.0, "one-step (turbo) 1 step"),
)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def latency(model: object, sampler: str, steps: int, guidance: float, batch: int, reps: int) -> float:
    """Median seconds per image over `reps` calls of `batch` prompts each, after two warm-up calls."""
    return interleaved_latency([(model, sampler, steps, guidance)], batch, reps)[0]


def interleaved_latency(calls: list[tuple[object, str, int, float]], batch: int, reps: int) -> list[float]:
    """latency() for several (model, sampler, steps, guidance) at once, their calls alternating: rep i times each
    in turn, so a drift of the host's speed (shared or throttled cores) weighs on every row alike. Median seconds
    per image per row, after two warm-up calls each."""
    prompts = [s.caption.text for s in sample_scenes(31, batch, "train")]
    times: list[list[float]] = [[] for _ in calls]
    for i in range(reps + 2):
        for row, (model, sampler, steps, guidance) in enumerate(calls):
            device: torch.device = model.device  # type: ignore[attr-defined]
            _synchronize(device)
            start = time.perf_counter()
            generate(model, prompts, sampler, steps, guidance, seed=i)
            _synchronize(device)
            if i >= 2:
                times[row].append((time.perf_counter() - start) / batch)
    return [statistics.median(t) for t in times]


def comparison_grid(models: dict[str, object], path: Path, count: int = 8,
                    spec: tuple[tuple[str, str, int, float, str], ...] = ROWS) -> None:
    """PNG: one row per seen caption, one column per ROWS entry (same captions, same seed)."""
    from server.commands.eval import _grid_png

    prompts = [s.caption.text for s in sample_scenes(777, count, "train")]
    columns = [generate(models[mid], prompts, sampler, steps, w, seed=0).cpu() for mid, sampler, steps, w, _ in spec]
    images = torch.stack(columns, dim=1).flatten(0, 1)  # (count * len(ROWS), 3, 64, 64), row-major
    _grid_png(images, path, columns=len(spec))
    path.with_suffix(".txt").write_text("columns: " + " | ".join(r[4] for r in spec) + "\n" + "\n".join(prompts) + "\n")


def markdown(result: dict[str, object]) -> str:
    """The README table: one line per row, seen and held-out accuracy, FID, latency."""
    header = (f"| model | caption acc seen | held-out | vs teacher (seen) | colour | shape | size | position | FID seen | "
              f"latency batch 1 ({result['card']}) | batched ({result['latency_batch']}) | speed-up batch 1 |")
    extra = [(stage, title) for stage, title in CUDA_STAGES.items()
             if all(f"speedup_batch1_{stage}" in row for row in result["rows"])]  # type: ignore[attr-defined]
    lines = [
        header + "".join(f" {title} (speed-up) |" for _, title in extra),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(extra),
    ]
    for row in result["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['name']} | {row['seen']['acc_caption']:.3f} | {row['heldout']['acc_caption']:.3f} | "
            f"{row['accuracy_vs_teacher']:.2f}x | {row['seen']['acc_colour']:.3f} | {row['seen']['acc_shape']:.3f} | "
            f"{row['seen'].get('acc_size', float('nan')):.3f} | {row['seen'].get('acc_position', float('nan')):.3f} | "
            f"{row['seen']['fid_judge']:.2f} | {row['latency_batch1_s'] * 1000:.1f} ms | "
            f"{row['latency_batched_s'] * 1000:.2f} ms | {row['speedup_batch1']:.1f}x |"
            + "".join(f" {row[f'latency_batch1_{stage}_s'] * 1000:.1f} ms ({row[f'speedup_batch1_{stage}']:.1f}x) |" for stage, _ in extra)
        )
    return "\n".join(lines) + "\n"


def use_tiny_decoders(models: dict[str, object]) -> None:
    """Fast mode for every model: its tiny decoder (model.tiny_vae) becomes the one eval.generate decodes with."""
    for mid, model in models.items():
        tiny = getattr(model, "tiny_vae", None)
        if tiny is None:
            raise SystemExit(f"--decoder tiny: model {mid!r} has no tiny decoder (its manifest entry's tiny_vae, or its weights)")
        model.vae = tiny  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="weights root holding bundled/, bundled_lcm/, bundled_turbo/, judge/")
    parser.add_argument("--manifest", type=Path, default=None, help="default: WEIGHTS/manifest.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--captions", type=int, default=512, help="captions per split (seen, held-out)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--latency-batch", type=int, default=None, help="default: 256 on CUDA, 16 on CPU")
    parser.add_argument("--latency-reps", type=int, default=None, help="default: 20 on CUDA, 5 on CPU")
    parser.add_argument("--latency-only", action="store_true", help="latency rows only -> students_latency.json (no judge, no grid)")
    parser.add_argument("--models", nargs="+", default=None, help="only these manifest ids' rows (the teacher, bundled, always runs)")
    parser.add_argument("--decoder", choices=("full", "tiny"), default="full",
                        help="tiny: every model decodes with its manifest's tiny decoder (fast mode)")
    parser.add_argument("--cuda-stages", nargs="+", choices=tuple(CUDA_STAGES), default=list(CUDA_STAGES),
                        help="the CUDA stages timed (each still turns its lever on for the stages after it)")
    parser.add_argument("--vae-cpu-bf16", choices=("auto", "on", "off"), default="off",
                        help="every model's VAE decoder in bf16 on the CPU (settings.vae_cpu_bf16; no effect on CUDA)")
    args = parser.parse_args()
    spec = tuple(r for r in ROWS if args.models is None or r[0] == "bundled" or r[0] in args.models)
    from pipelines.accel import enable_cpu_bf16_decoder
    from pipelines.loading import load_from_manifest

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    manifest = args.manifest or args.weights / "manifest.yaml"
    args.out.mkdir(parents=True, exist_ok=True)
    judge = None if args.latency_only else load_judge(args.weights, device)
    dtype = torch.float16 if cuda else torch.float32
    models = {mid: load_from_manifest(mid, manifest, args.weights, device=device, dtype=dtype) for mid in dict.fromkeys(r[0] for r in spec)}
    if args.decoder == "tiny":
        use_tiny_decoders(models)
    bf16_decoder = {mid: enable_cpu_bf16_decoder(model, args.vae_cpu_bf16) for mid, model in models.items()}
    lat_batch = args.latency_batch or (256 if cuda else 16)
    reps = args.latency_reps or (20 if cuda else 5)
    eval_batch = 512 if cuda else 16

    rows = []
    for mid, sampler, steps, w, name in spec:
        model = models[mid]
        generate(model, ["a red circle"], sampler, steps, w, seed=0)  # warm-up (kernels, allocator)
        row: dict[str, object] = {"name": name, "model": mid, "sampler": sampler, "steps": steps, "guidance": w,
                                  "cpu_bf16_decoder": bf16_decoder[mid]}
        if not args.latency_only:
            records = evaluate(model, judge, [Config(sampler, steps, w, ("seen", "heldout"))], args.captions, eval_batch,
                               args.out, float("inf"), label=f"{mid}_")
            row.update({r["split"]: r for r in records})  # type: ignore[misc]
        rows.append(row)
    calls = [(models[mid], sampler, steps, w) for mid, sampler, steps, w, _ in spec]
    for key, batch, count in (("latency_batch1_s", 1, reps), ("latency_batched_s", lat_batch, max(3, reps // 4))):
        for row, seconds in zip(rows, interleaved_latency(calls, batch, count)):
            row[key] = seconds
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k not in ("seen", "heldout")}), flush=True)
    if not args.latency_only:
        comparison_grid(models, args.out / "students_grid.png", spec=spec)
    if cuda:  # as the engine serves on CUDA by default: the UNet replayed as one CUDA graph per shape ("graphs"), then
        # also the decoder lever of settings.vae_accel's default, "auto" ("served": compiled for the few-step students),
        # then also the text encoder's graphs ("text")
        from pipelines.accel import (
            CudaGraphUNet,
            disable_vae_decoder_accel,
            enable_compile,
            enable_cuda_graphs,
            enable_text_encoder_graphs,
            enable_vae_decoder_accel,
        )

        def decoder_lever(mode: str) -> Callable[[object], None]:  # every decoder in `mode`, in place of "auto"'s choice
            def enable(model: object) -> None:
                disable_vae_decoder_accel(model)
                enable_vae_decoder_accel(model, mode)
            return enable

        def compiled_unet(model: object) -> None:  # server.models' order with compile_unet: compile, then graphs around it
            unet = model.denoiser.unet  # type: ignore[attr-defined]
            if isinstance(unet, CudaGraphUNet):
                model.denoiser.unet = unet.wrapped  # type: ignore[attr-defined]
            enable_compile(model)
            enable_cuda_graphs(model)

        levers = {"graphs": enable_cuda_graphs, "served": lambda m: enable_vae_decoder_accel(m, "auto"),  # CUDA_STAGES' order
                  "text": enable_text_encoder_graphs, "text_vaegraphs": decoder_lever("graphs"),
                  "text_vaecompilegraphs": decoder_lever("compile_graphs"), "compiled": compiled_unet}
        for stage, enable in levers.items():
            for model in models.values():
                enable(model)
            if stage not in args.cuda_stages:
                continue
            for row in rows:
                try:
                    row[f"latency_batch1_{stage}_s"] = latency(models[str(row["model"])], str(row["sampler"]), int(row["steps"]),  # type: ignore[call-overload]
                                                               float(row["guidance"]), 1, reps)  # type: ignore[arg-type]
                except (RuntimeError, ValueError, TypeError, AssertionError) as e:  # a failed capture must not cost the other figures
                    row[f"{stage}_error"] = f"{type(e).__name__}: {e}"
            print(stage, {str(row["name"]): row.get(f"latency_batch1_{stage}_s", row.get(f"{stage}_error")) for row in rows}, flush=True)
            if stage == "text":  # the engine's CUDA defaults: batched too (eager batched calls are bound by launches)
                try:
                    for row, seconds in zip(rows, interleaved_latency(calls, lat_batch, max(3, reps // 4))):
                        row["latency_batched_text_s"] = seconds
                except (RuntimeError, ValueError, TypeError, AssertionError) as e:
                    rows[0]["batched_text_error"] = f"{type(e).__name__}: {e}"
    teacher = rows[0]
    for row in rows:
        for stage in CUDA_STAGES:
            key = f"latency_batch1_{stage}_s"
            if key in row and key in teacher:
                row[f"speedup_batch1_{stage}"] = teacher[key] / row[key]  # type: ignore[operator]
        if "latency_batched_text_s" in row and "latency_batched_text_s" in teacher:
            row["speedup_batched_text"] = teacher["latency_batched_text_s"] / row["latency_batched_text_s"]  # type: ignore[operator]
        if not args.latency_only:
            row["accuracy_vs_teacher"] = row["seen"]["acc_caption"] / max(teacher["seen"]["acc_caption"], 1e-9)  # type: ignore[index]
            row["accuracy_vs_teacher_heldout"] = row["heldout"]["acc_caption"] / max(teacher["heldout"]["acc_caption"], 1e-9)  # type: ignore[index]
        row["speedup_batch1"] = teacher["latency_batch1_s"] / row["latency_batch1_s"]  # type: ignore[operator]
        row["speedup_batched"] = teacher["latency_batched_s"] / row["latency_batched_s"]  # type: ignore[operator]
    result = {
        "device": str(device), "card": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "captions_per_split": args.captions,
        "latency_batch": lat_batch, "latency_reps": reps, "dtype": str(dtype).removeprefix("torch."), "decoder": args.decoder,
        "vae_cpu_bf16": args.vae_cpu_bf16,
        "latency_note": ("median seconds per image through the serving path (eval.generate: text encoder, sampler, UNet, "
                         "VAE decoder), eager; on CUDA torch.cuda.synchronize around each call, and batch 1 again with "
                         "the UNet as CUDA graphs (the engine's CUDA default), then also with the engine's default "
                         "decoder lever (vae_accel auto: the decoder compiled for few-step models), and the text "
                         "encoder's graphs, that stage batched too (latency_batched_text_s)"),
        "rows": rows,
    }
    if args.latency_only:
        (args.out / "students_latency.json").write_text(json.dumps(result, indent=1) + "\n")
        for row in rows:
            print(f"{row['name']}: batch 1 {row['latency_batch1_s'] * 1000:.1f} ms ({row['speedup_batch1']:.1f}x), "
                  f"batched {row['latency_batched_s'] * 1000:.2f} ms ({row['speedup_batched']:.1f}x)", flush=True)
            if "speedup_batched_text" in row:
                print(f"{row['name']}: batched with the engine's CUDA defaults {row['latency_batched_text_s'] * 1000:.3f} ms "  # type: ignore[operator]
                      f"({row['speedup_batched_text']:.1f}x)", flush=True)
        return
    (args.out / "students_eval.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "students_eval.md").write_text(markdown(result))
    print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
