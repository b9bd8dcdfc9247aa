"""Classifier guidance on the bundled model: judge accuracy against the classifier scale.

    python -m training.classifier_sweep [--captions N] [--scales 0,0.1,0.3,1] [--device cpu] [--out FILE]

DDIM 25 with CFG w = 4 plus classifier guidance (Dhariwal & Nichol 2021: x0 += s sigma^2
grad log p(y | x)), labels from each caption's mentioned (shape, colour) pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.classifier import load_guidance_classifier
from training.data import caption_presence, sample_scenes
from training.judge import caption_accuracy


def sweep(captions: int, scales: list[float], device: torch.device, weights: Path) -> list[dict[str, float]]:
    """One record per (split, scale): judge accuracies of DDIM 25, w = 4 samples."""
    from pipelines.loading import load_from_manifest
    from server.commands.eval import generate, load_judge

    model = load_from_manifest("bundled", device=device)
    judge = load_judge(weights, device)
    classifier = load_guidance_classifier(weights / "bundled_classifier" / "classifier.safetensors", device)
    records = []
    for split, name in (("train", "seen"), ("heldout", "heldout")):
        scenes = sample_scenes(99, captions, split)
        labels = torch.tensor([caption_presence(s.caption) for s in scenes])
        for scale in scales:
            images = generate(model, [s.caption.text for s in scenes], "ddim", 25, 4.0, seed=0,
                              classifier=classifier, classifier_scale=scale, classifier_labels=labels)
            accuracy, _ = caption_accuracy(judge, images, [s.caption for s in scenes])
            records.append({"split": name, "classifier_scale": scale, "captions": captions, **accuracy})
            print(json.dumps(records[-1]), flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=16)
    parser.add_argument("--scales", default="0,0.1,0.3,1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--out", type=Path, default=Path("training/results/classifier_guidance.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    records = sweep(args.captions, [float(s) for s in args.scales.split(",")], torch.device(args.device), args.weights)
    args.out.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
