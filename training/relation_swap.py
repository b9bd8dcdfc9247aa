"""Does the bundled model's layout respond to the relation word? Each seen two-object relation
caption is sampled twice from the same noise: as written, and with its relation word swapped
(training.data.swap_relation: "left" <-> "right", "above" <-> "below"), which asks for the mirrored layout
of the same two objects. The judge finds both objects in both images; this prints how often the
layout is unchanged by the swap (the word ignored), how often each image satisfies its own
caption's relation, and how often both do (the word controls the layout).

The control: single-object captions with a position word, swapped the same way ("left" <-> "right",
"top" <-> "bottom"). The model places single objects by their position word (0.9-1.0), so there
the layout should follow the swap; it shows that the measure sees a word that is obeyed.

    python -m training.relation_swap [--model bundled] [--captions 96] [--unet DIR --text-directions 2] [--device cuda] [--out FILE.md]

Two objects placed at random in distinct cells satisfy a relation 27 / 72 = 0.375 of the time, and
a caption and its swap both (each independently at random) 0.375^2 = 0.14; a model that ignores
the word satisfies both only when the shared layout fits both, which is never for a strict relation.
One object at random is on a given side 3 / 9 of the time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.analysis import ROOT, add_candidate_args, emit, load_model, model_name
from training.data import (
    SWAPPED_POSITION,
    Caption,
    position_holds,
    relation_holds,
    sample_scenes,
    swap_position,
    swap_relation,
)
from training.judge import DetectedObject, detect

# rates at random placement: layout unchanged, one caption's word holds, both hold
RANDOM = {"relation": (1 / 72, 27 / 72, (27 / 72) ** 2), "position": (1 / 9, 3 / 9, 1 / 9)}


def cells(detected: list[DetectedObject], caption: Caption) -> tuple[int, ...] | None:
    """The cells of the caption's objects (matched by shape and colour), or None if one is missing
    or found twice."""
    found = []
    for obj in caption.objects:
        matches = [d.cell for d in detected if d.shape == obj.shape and d.colour == obj.colour]
        if len(matches) != 1:
            return None
        found.append(matches[0])
    return tuple(found)


def holds(found: tuple[int, ...], caption: Caption) -> bool:
    """Whether the objects' cells satisfy the caption's relation, or its position word."""
    if caption.relation is not None:
        return relation_holds(found[0], found[1], caption.relation)
    assert caption.position is not None
    return position_holds(found[0], caption.position)


def tally(detected: list[list[DetectedObject]], swapped_detected: list[list[DetectedObject]],
          captions: list[Caption], swapped: list[Caption]) -> dict[str, float]:
    """Rates over the pairs whose objects are found once each in both images."""
    pairs = same = ok = ok_swapped = both = 0
    for det, det_s, caption, caption_s in zip(detected, swapped_detected, captions, swapped):
        a, b = cells(det, caption), cells(det_s, caption)
        if a is None or b is None:
            continue
        pairs += 1
        same += a == b
        first, second = holds(a, caption), holds(b, caption_s)
        ok += first
        ok_swapped += second
        both += first and second
    n = max(pairs, 1)
    return {"captions": float(len(captions)), "pairs": float(pairs), "same_layout": same / n,
            "holds": ok / n, "holds_swapped": ok_swapped / n, "both_hold": both / n}


def markdown(results: dict[str, dict[str, float]], name: str, steps: int, guidance: float, device: str = "CPU") -> str:
    title = (f"Word swap on `{name}` (DDIM {steps}, w = {guidance}, {device} fp32; a caption and its swap sampled "
             "from the same noise; seen captions; pairs: both images show each object once).")
    lines = [title, "",
             "| captions | pairs | layout unchanged by the swap | as written: holds | swapped: holds | both hold |",
             "|---|---|---|---|---|---|"]
    for kind, label in (("relation", "two objects, relation word"), ("position", "one object, side word (control)")):
        r, (same, one, both) = results[kind], RANDOM[kind]
        lines.append(f"| {label} | {int(r['pairs'])} of {int(r['captions'])} | {r['same_layout']:.3f} | {r['holds']:.3f} | "
                     f"{r['holds_swapped']:.3f} | {r['both_hold']:.3f} |")
        lines.append(f"| (random placement) | | {same:.3f} | {one:.3f} | {one:.3f} | {both:.3f} |")
    return "\n".join(lines) + "\n"


def seen_captions(count: int, keep: object) -> list[Caption]:
    """The first `count` seen captions (seeds 2026, 2027, ...) that `keep` accepts."""
    captions: list[Caption] = []
    seed = 2026
    while len(captions) < count:
        captions += [s.caption for s in sample_scenes(seed, 512, "train") if keep(s.caption)]  # type: ignore[operator]
        seed += 1
    return captions[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--captions", type=int, default=96, help="of each kind (relation, position)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    add_candidate_args(parser)
    parser.add_argument("--device", default="cpu", help="cuda: the same fp32 sampling on a GPU (a GPU call's finish)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)

    from server.commands.eval import generate, load_judge

    model = load_model(args.model, device, args.unet, args.text_directions)
    judge = load_judge(ROOT / "weights", device)

    def sample(caps: list[Caption]) -> list[list[DetectedObject]]:
        images = torch.cat([generate(model, [c.text for c in caps[i : i + 48]], "ddim", args.steps, args.guidance, seed=i)
                            for i in range(0, len(caps), 48)])
        return detect(judge, images)[0]

    kinds = {"relation": (lambda c: c.relation is not None and len(c.objects) == 2, swap_relation),
             "position": (lambda c: c.position in SWAPPED_POSITION, swap_position)}
    results = {}
    for kind, (keep, swap) in kinds.items():
        captions = seen_captions(args.captions, keep)
        swapped = [swap(c) for c in captions]
        results[kind] = tally(sample(captions), sample(swapped), captions, swapped)
    text = markdown(results, model_name(args.model, args.unet), args.steps, args.guidance,
                    "CPU" if device.type == "cpu" else device.type.upper())
    emit(text, args.out)


if __name__ == "__main__":
    main()
