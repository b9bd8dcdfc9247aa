"""Teacher vs one-step students: judge accuracy, judge-space FID and latency per image.

    python -m training.students_eval --weights W --out DIR [--captions 512] [--device cuda]

W is a weights root with manifest.yaml (from `python -m training.export_students RUN W`), or the
repository's weights/ with --manifest weights_manifest.yaml. Rows: the teacher (bundled, DDIM 25,
w = 4), the LCM student (bundled-lcm, 1 / 2 / 4 steps) and the ADD student (bundled-turbo, one
step), students without a CFG pass (w = 1). Accuracy (whole caption and per attribute) and FID come
from server.commands.eval.evaluate on the same `--captions` seen and held-out captions per row.

Latency per image goes through the same serving path (server.commands.eval.generate: text
encoder, sampler, UNet, VAE decoder; eager, no CUDA graphs), after warm-up, as the median of
repeated calls, with torch.cuda.synchronize around each on CUDA: "batch 1" is one prompt per call,
"batched" is `--latency-batch` prompts per call divided by that count.

Writes DIR/students_eval.json, DIR/students_eval.md and DIR/students_grid.png (rows: 8 seen
captions; columns: teacher, LCM 1, 2, 4, ADD 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from server.commands.eval import Config, evaluate, generate, load_judge
from training.data import sample_scenes

# (manifest id, sampler, steps, guidance w, row name)
ROWS: tuple[tuple[str, str, int, float, str], ...] = (
    ("bundled", "ddim", 25, 4.0, "teacher DDIM 25, w=4"),
    ("bundled-lcm", "lcm", 1, 1.0, "LCM 1 step"),
    ("bundled-lcm", "lcm", 2, 1.0, "LCM 2 steps"),
    ("bundled-lcm", "lcm", 4, 1.0, "LCM 4 steps"),
    ("bundled-turbo", "turbo", 1, 1.0, "ADD 1 step"),
)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def latency(model: object, sampler: str, steps: int, guidance: float, batch: int, reps: int) -> float:
    """Median seconds per image over `reps` calls of `batch` prompts each, after two warm-up calls."""
    device: torch.device = model.device  # type: ignore[attr-defined]
    prompts = [s.caption.text for s in sample_scenes(31, batch, "train")]
    times = []
    for i in range(reps + 2):
        _synchronize(device)
        start = time.perf_counter()
        generate(model, prompts, sampler, steps, guidance, seed=i)
        _synchronize(device)
        if i >= 2:
            times.append((time.perf_counter() - start) / batch)
    return statistics.median(times)


def comparison_grid(models: dict[str, object], path: Path, count: int = 8) -> None:
    """PNG: one row per seen caption, one column per ROWS entry (same captions, same seed)."""
    from server.commands.eval import _grid_png

    prompts = [s.caption.text for s in sample_scenes(777, count, "train")]
    columns = [generate(models[mid], prompts, sampler, steps, w, seed=0).cpu() for mid, sampler, steps, w, _ in ROWS]
    images = torch.stack(columns, dim=1).flatten(0, 1)  # (count * len(ROWS), 3, 64, 64), row-major
    _grid_png(images, path, columns=len(ROWS))
    path.with_suffix(".txt").write_text("columns: " + " | ".join(r[4] for r in ROWS) + "\n" + "\n".join(prompts) + "\n")


def markdown(result: dict[str, object]) -> str:
    """The README table: one line per row, seen and held-out accuracy, FID, latency."""
    header = (f"| model | caption acc seen | held-out | vs teacher (seen) | colour | shape | size | position | FID seen | "
              f"latency batch 1 ({result['card']}) | batched ({result['latency_batch']}) | speed-up batch 1 |")
    lines = [
        header,
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['name']} | {row['seen']['acc_caption']:.3f} | {row['heldout']['acc_caption']:.3f} | "
            f"{row['accuracy_vs_teacher']:.2f}x | {row['seen']['acc_colour']:.3f} | {row['seen']['acc_shape']:.3f} | "
            f"{row['seen'].get('acc_size', float('nan')):.3f} | {row['seen'].get('acc_position', float('nan')):.3f} | "
            f"{row['seen']['fid_judge']:.2f} | {row['latency_batch1_s'] * 1000:.1f} ms | "
            f"{row['latency_batched_s'] * 1000:.2f} ms | {row['speedup_batch1']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="weights root holding bundled/, bundled_lcm/, bundled_turbo/, judge/")
    parser.add_argument("--manifest", type=Path, default=None, help="default: WEIGHTS/manifest.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--captions", type=int, default=512, help="captions per split (seen, held-out)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--latency-batch", type=int, default=None, help="default: 256 on CUDA, 16 on CPU")
    parser.add_argument("--latency-reps", type=int, default=None, help="default: 20 on CUDA, 5 on CPU")
    args = parser.parse_args()
    from pipelines.loading import load_from_manifest

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    manifest = args.manifest or args.weights / "manifest.yaml"
    args.out.mkdir(parents=True, exist_ok=True)
    judge = load_judge(args.weights, device)
    dtype = torch.float16 if cuda else torch.float32
    models = {mid: load_from_manifest(mid, manifest, args.weights, device=device, dtype=dtype) for mid in dict.fromkeys(r[0] for r in ROWS)}
    lat_batch = args.latency_batch or (256 if cuda else 16)
    reps = args.latency_reps or (20 if cuda else 5)
    eval_batch = 512 if cuda else 16

    rows = []
    for mid, sampler, steps, w, name in ROWS:
        model = models[mid]
        generate(model, ["a red circle"], sampler, steps, w, seed=0)  # warm-up (kernels, allocator)
        records = evaluate(model, judge, [Config(sampler, steps, w, ("seen", "heldout"))], args.captions, eval_batch,
                           args.out, float("inf"), label=f"{mid}_")
        by_split = {r["split"]: r for r in records}
        rows.append({
            "name": name, "model": mid, "sampler": sampler, "steps": steps, "guidance": w,
            "seen": by_split["seen"], "heldout": by_split["heldout"],
            "latency_batch1_s": latency(model, sampler, steps, w, 1, reps),
            "latency_batched_s": latency(model, sampler, steps, w, lat_batch, max(3, reps // 4)),
        })
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("seen", "heldout")}), flush=True)
    teacher = rows[0]
    for row in rows:
        row["accuracy_vs_teacher"] = row["seen"]["acc_caption"] / max(teacher["seen"]["acc_caption"], 1e-9)
        row["accuracy_vs_teacher_heldout"] = row["heldout"]["acc_caption"] / max(teacher["heldout"]["acc_caption"], 1e-9)
        row["speedup_batch1"] = teacher["latency_batch1_s"] / row["latency_batch1_s"]
        row["speedup_batched"] = teacher["latency_batched_s"] / row["latency_batched_s"]
    result = {
        "device": str(device), "card": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "captions_per_split": args.captions,
        "latency_batch": lat_batch, "latency_reps": reps, "dtype": str(dtype).removeprefix("torch."),
        "latency_note": "median seconds per image, serving path (eval.generate) eager; cuda.synchronize around each call on CUDA",
        "rows": rows,
    }
    comparison_grid(models, args.out / "students_grid.png")
    (args.out / "students_eval.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "students_eval.md").write_text(markdown(result))
    print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
