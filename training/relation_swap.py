"""Does the bundled model's layout respond to the relation word? Each seen two-object relation
caption is sampled twice from the same noise: as written, and with its relation word swapped
(training.data.swap_relation: "left" <-> "right", "above" <-> "below"), which asks for the mirrored layout
of the same two objects. The judge finds both objects in both images; this prints how often the
layout is unchanged by the swap (the word ignored), how often each image satisfies its own
caption's relation, and how often both do (the word controls the layout).

    python -m training.relation_swap [--model bundled] [--captions 96] [--unet DIR --text-directions 2] [--out FILE.md]

Two objects placed at random in distinct cells satisfy a relation 27 / 72 = 0.375 of the time, and
a caption and its swap both (each independently at random) 0.375^2 = 0.14; a model that ignores
the word satisfies both only when the shared layout fits both, which is never for a strict relation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.data import SWAPPED_RELATION, Caption, relation_holds, sample_scenes, swap_relation
from training.judge import DetectedObject, detect

ROOT = Path(__file__).resolve().parents[1]


def cells(detected: list[DetectedObject], caption: Caption) -> tuple[int, int] | None:
    """The cells of the caption's two objects (matched by shape and colour), or None if either is
    missing or found twice."""
    found = []
    for obj in caption.objects[:2]:
        matches = [d.cell for d in detected if d.shape == obj.shape and d.colour == obj.colour]
        if len(matches) != 1:
            return None
        found.append(matches[0])
    return found[0], found[1]


def tally(detected: list[list[DetectedObject]], swapped_detected: list[list[DetectedObject]],
          captions: list[Caption]) -> dict[str, float]:
    """Rates over the pairs whose two objects are found once each in both images."""
    pairs = same = holds = holds_swapped = both = 0
    for det, det_s, caption in zip(detected, swapped_detected, captions):
        a, b = cells(det, caption), cells(det_s, caption)
        if a is None or b is None:
            continue
        assert caption.relation is not None
        pairs += 1
        same += a == b
        ok = relation_holds(a[0], a[1], caption.relation)
        ok_s = relation_holds(b[0], b[1], SWAPPED_RELATION[caption.relation])
        holds += ok
        holds_swapped += ok_s
        both += ok and ok_s
    n = max(pairs, 1)
    return {"captions": float(len(captions)), "pairs": float(pairs), "same_layout": same / n,
            "holds": holds / n, "holds_swapped": holds_swapped / n, "both_hold": both / n}


def markdown(result: dict[str, float], name: str, steps: int, guidance: float) -> str:
    title = (f"Relation swap on `{name}` (DDIM {steps}, w = {guidance}, CPU fp32, the same noise for a caption and its swap): "
             f"{int(result['captions'])} seen two-object relation captions, {int(result['pairs'])} pairs with both objects "
             "found once in both images.")
    return "\n".join([
        title, "",
        "| measure | rate | at random placement |", "|---|---|---|",
        f"| layout unchanged by the swap (both cells) | {result['same_layout']:.3f} | 1 / 72 = 0.014 |",
        f"| caption as written: relation holds | {result['holds']:.3f} | 0.375 |",
        f"| swapped caption: relation holds | {result['holds_swapped']:.3f} | 0.375 |",
        f"| both hold (the word sets the layout) | {result['both_hold']:.3f} | 0.141 |",
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--captions", type=int, default=96)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--unet", type=Path, default=None, help="a diffusers UNet folder to use instead of the model's")
    parser.add_argument("--text-directions", type=int, choices=(1, 2), default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from pipelines.loading import load_from_manifest
    from server.commands.eval import generate, load_judge

    model = load_from_manifest(args.model, ROOT / "weights_manifest.yaml", ROOT / "weights", device="cpu", dtype=torch.float32)
    if args.unet is not None:
        from diffusers import UNet2DConditionModel

        model.denoiser.unet.load_state_dict(UNet2DConditionModel.from_pretrained(args.unet).state_dict())  # type: ignore[attr-defined]
        model.text_encoder.both_directions = args.text_directions == 2  # type: ignore[union-attr]
    captions: list[Caption] = []
    seed = 2026
    while len(captions) < args.captions:
        captions += [s.caption for s in sample_scenes(seed, 512, "train")
                     if s.caption.relation is not None and len(s.caption.objects) == 2]
        seed += 1
    captions = captions[: args.captions]
    judge = load_judge(ROOT / "weights", torch.device("cpu"))

    def sample(caps: list[Caption]) -> torch.Tensor:
        return torch.cat([generate(model, [c.text for c in caps[i : i + 48]], "ddim", args.steps, args.guidance, seed=i)
                          for i in range(0, len(caps), 48)])

    detected, _ = detect(judge, sample(captions))
    detected_swapped, _ = detect(judge, sample([swap_relation(c) for c in captions]))
    name = args.model if args.unet is None else f"{args.model}` with the UNet of `{args.unet}"
    text = markdown(tally(detected, detected_swapped, captions), name, args.steps, args.guidance)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
