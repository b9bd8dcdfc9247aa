"""Two UNets of one served model on the same captions and seeds: whole-caption judge agreement per caption,
and their paired difference with its standard error.

training.students_eval scores each model on its own; whether a candidate beats the shipped weights beyond the
captions' own noise is a paired question (the same caption and noise for both), whose standard error is far
smaller than that of two separate accuracies when the two models mostly agree.

    python -m training.paired_compare --model bundled-turbo --unet CANDIDATE [--baseline DIR] [--captions 768]
        [--seed 91] [--sampler turbo --steps 1 --guidance 1] [--out FILE.json]

The baseline is the model's own UNet unless --baseline names another diffusers UNet folder. Seen captions
are the grammar's seen split drawn with --seed, held-out ones its held-out split with --seed + 1; the images
of each chunk of 64 captions share one sampling seed (server.commands.eval.generate), so both UNets start
from the same noise. fp32, on the CPU unless --device names another (a GPU call's candidates, compared on the card).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import Tensor

from training.analysis import ROOT, load_model
from training.data import Caption, sample_scenes
from training.judge import detect, score_caption

CHUNK = 64


def agreement(model: object, judge: object, captions: list[Caption], sampler: str, steps: int, guidance: float) -> Tensor:
    """1.0 where the judge finds the whole caption in the model's image, else 0.0, one per caption."""
    from server.commands.eval import generate

    right: list[float] = []
    for start in range(0, len(captions), CHUNK):
        part = captions[start : start + CHUNK]
        images = generate(model, [c.text for c in part], sampler, steps, guidance, seed=start)
        detected, _ = detect(judge, images)  # type: ignore[arg-type]
        right += [float(bool(score_caption(objs, caption)["caption"])) for objs, caption in zip(detected, part)]
    return torch.tensor(right)


def paired(candidate: Tensor, baseline: Tensor) -> dict[str, float]:
    """Both accuracies, their mean paired difference and its standard error, and the captions only one gets right."""
    diff = candidate - baseline
    se = diff.std().item() / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return {"captions": len(diff), "candidate": candidate.mean().item(), "baseline": baseline.mean().item(),
            "diff": diff.mean().item(), "paired_se": se,
            "candidate_only": int((diff > 0).sum()), "baseline_only": int((diff < 0).sum())}


def by_objects(candidate: Tensor, baseline: Tensor, captions: list[Caption]) -> dict[str, dict[str, float]]:
    """paired() over the captions of each object count ("1", "2", "3"): where a candidate gains or loses."""
    counts = torch.tensor([len(c.objects) for c in captions])
    return {str(n): paired(candidate[counts == n], baseline[counts == n]) for n in sorted(set(counts.tolist()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled-turbo")
    parser.add_argument("--unet", type=Path, required=True, help="the candidate: a diffusers UNet folder of the model's architecture")
    parser.add_argument("--baseline", type=Path, default=None, help="default: the model's own UNet")
    parser.add_argument("--captions", type=int, default=768, help="per split (seen, held-out)")
    parser.add_argument("--seed", type=int, default=91)
    parser.add_argument("--sampler", default="turbo")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from server.commands.eval import load_judge

    device = torch.device(args.device)
    judge = load_judge(ROOT / "weights", device)
    models = {"candidate": load_model(args.model, device, args.unet), "baseline": load_model(args.model, device, args.baseline)}
    result: dict[str, object] = {"model": args.model, "candidate": str(args.unet), "baseline": str(args.baseline or "shipped"),
                                 "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "seed": args.seed,
                                 "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)}
    both, every_caption = {}, []
    for split, seed in (("seen", args.seed), ("heldout", args.seed + 1)):
        captions = [s.caption for s in sample_scenes(seed, args.captions, "train" if split == "seen" else "heldout")]
        with torch.no_grad():
            scores = {name: agreement(m, judge, captions, args.sampler, args.steps, args.guidance) for name, m in models.items()}
        both[split] = scores
        every_caption += captions
        result[split] = paired(scores["candidate"], scores["baseline"])
        print(split, json.dumps(result[split]), flush=True)
    candidate, baseline = (torch.cat([both[s][name] for s in both]) for name in ("candidate", "baseline"))
    result["both"] = paired(candidate, baseline)
    print("both", json.dumps(result["both"]), flush=True)
    result["both_by_objects"] = by_objects(candidate, baseline, every_caption)
    for n, row in result["both_by_objects"].items():  # type: ignore[union-attr]
        print(f"both, {n} object(s)", json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
