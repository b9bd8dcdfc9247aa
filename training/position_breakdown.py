"""Where the bundled model's positions fail: judge agreement on positions and relations, by word and
by how the caption phrases the relation.

The grammar states a relation directly ("a red circle left of a blue square") or reversed ("a blue
square to the right of a red circle": the same layout, the objects named in the other order). For
generated images of seen captions (a served model, DDIM 25, w = 4 by default) and for real renders
of the same captions, this prints the position agreement (training.judge.score_caption) per
single-object position word, per relation x phrasing, and the whole-caption and per-attribute
(count, shape, colour, size) agreement per object count, as a Markdown table.

Then a linear probe of the text encoder (the model's own, frozen): for horizontal relations between
two objects of different colours, from the encoder's output at each object's colour token, is the
first-mentioned object on the left? CLIP's encoder is causal, so only the second-mentioned object's
tokens can have seen the relation word; the probe says whether the encoder carries the relation at
all (then the UNet is what fails to use it).

    python -m training.position_breakdown [--model bundled] [--captions 384] [--out FILE.md] [--unet DIR]
        [--sampler ddim --steps 25 --guidance 4]

--unet DIR swaps in a diffusers UNet folder of the same architecture (a trained candidate not yet
shipped, e.g. a GPU call's teacher_unet/) for the model's own; add --text-directions 2 for a UNet
trained on two-direction text conditioning (training.text_unet --text-directions 2).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch

from training.analysis import ROOT, add_candidate_args, emit, load_model, model_name
from training.data import Caption, _object_phrase, render, sample_scenes, scenes_to_batch
from training.judge import detect, score_caption

# two objects in distinct cells of the 3x3 grid, placed at random: 27 of the 72 ordered cell pairs
# put the first in a column left of the second's (likewise rows for above / below)
CHANCE = "A relation holds by chance for two objects placed at random in distinct cells: 27 / 72 = 0.375."


def phrasing(caption: Caption) -> str:
    """'direct' when the relation's first object is named first in the text, else 'reversed'."""
    a, b = (caption.text.find(_object_phrase(o)) for o in caption.objects[:2])
    return "direct" if a < b else "reversed"


def breakdown(judge: torch.nn.Module, images: torch.Tensor, captions: list[Caption]) -> dict[str, list[bool]]:
    """Group key -> per-caption outcomes (position agreement; whole caption and each attribute per object count)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    detected, _ = detect(judge, images)
    for objs, caption in zip(detected, captions):
        score = score_caption(objs, caption)
        groups[f"caption, {len(caption.objects)} object(s)"].append(bool(score["caption"]))
        for attribute in ("count", "shape", "colour", "size"):  # which part fails as objects are added
            if score[attribute] is not None:
                groups[f"{attribute}, {len(caption.objects)} object(s)"].append(bool(score[attribute]))
        if caption.position is not None:
            groups[f"position '{caption.position}'"].append(bool(score["position"]))
        if caption.relation is not None:
            groups[f"relation {caption.relation}, {phrasing(caption)}"].append(bool(score["position"]))
            groups[f"relations, {phrasing(caption)}"].append(bool(score["position"]))
    return groups


def relation_probe(text_encoder: torch.nn.Module, train_seed: int = 11, test_seed: int = 12,
                   scenes: int = 30_000, reverse: bool = False) -> dict[str, float]:
    """Test accuracy of a logistic probe per colour token (first / second mentioned object).
    reverse: encode each caption with its words reversed (pipelines.text.reverse_words, the second
    half of two-direction conditioning); the objects keep their names "first" / "second" mentioned
    in the caption as written."""
    from pipelines.text import reverse_words
    from training.data import COLOURS, tokenize

    colour_id = {i: int(tokenize([name])[0, 1]) for i, name in enumerate(COLOURS)}

    def features(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        caps = [s.caption for s in sample_scenes(seed, n, "train")]
        caps = [c for c in caps if c.relation in ("left_of", "right_of") and c.objects[0].colour != c.objects[1].colour]
        tokens = tokenize([reverse_words(c.text) if reverse else c.text for c in caps])
        with torch.no_grad():
            hidden = text_encoder(tokens).last_hidden_state
        first_h, second_h, first_left = [], [], []
        for i, c in enumerate(caps):
            reversed_ = phrasing(c) == "reversed"
            first, second = (c.objects[1], c.objects[0]) if reversed_ else (c.objects[0], c.objects[1])
            ids = tokens[i].tolist()
            first_h.append(hidden[i, ids.index(colour_id[first.colour])])  # colours differ: one token each
            second_h.append(hidden[i, ids.index(colour_id[second.colour])])
            first_left.append(float((c.relation == "left_of") != reversed_))
        return torch.stack(first_h), torch.stack(second_h), torch.tensor(first_left)

    train, test = features(train_seed, scenes), features(test_seed, scenes // 4)
    out = {}
    for name, k in (("first-mentioned", 0), ("second-mentioned", 1)):
        x, xt = train[k], test[k]
        mu, sd = x.mean(0), x.std(0) + 1e-6
        x, xt = (x - mu) / sd, (xt - mu) / sd
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(400):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, train[2])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out[name] = float((((xt @ w + b) > 0).float() == test[2]).float().mean())
    out["test captions"] = float(len(test[2]))
    return out


def probe_lines(text_encoder: torch.nn.Module) -> list[str]:
    """The relation probe on the caption as written and word-reversed, as Markdown lines."""
    lines = []
    for reverse in (False, True):
        probe = relation_probe(text_encoder, reverse=reverse)
        lines += [*([""] if lines else []), (f"Text-encoder probe ({'words reversed' if reverse else 'caption as written'}; horizontal relations, "
                   f"{int(probe['test captions'])} test captions): is the first-mentioned object on the left, read "
                   "linearly from the encoder output at"),
                  f"- the first-mentioned object's colour token: {probe['first-mentioned']:.3f} (0.5 = chance)",
                  f"- the second-mentioned object's colour token: {probe['second-mentioned']:.3f}"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--captions", type=int, default=384)
    parser.add_argument("--sampler", default="ddim", help="e.g. turbo (--steps 1 --guidance 1) for bundled-turbo")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--probe-only", action="store_true", help="the text-encoder probes alone (no sampling)")
    add_candidate_args(parser)
    args = parser.parse_args()

    from server.commands.eval import generate, load_judge

    model = load_model(args.model, "cpu", args.unet, args.text_directions)
    lines = probe_lines(model.text_encoder.model)  # type: ignore[attr-defined]
    if not args.probe_only:
        scenes = sample_scenes(2026, args.captions, "train")
        captions = [s.caption for s in scenes]
        judge = load_judge(ROOT / "weights", torch.device("cpu"))
        sampled = torch.cat([generate(model, [c.text for c in captions[i : i + 64]], args.sampler, args.steps, args.guidance, seed=i)
                             for i in range(0, len(captions), 64)])
        real = render(scenes_to_batch(scenes), torch.Generator().manual_seed(0))
        generated, renders = breakdown(judge, sampled, captions), breakdown(judge, real, captions)
        name = model_name(args.model, args.unet)
        table = [(f"Position agreement of `{name}` ({args.sampler} {args.steps}, w = {args.guidance}, CPU fp32) vs real renders, "
                  f"{args.captions} seen captions (seed 2026)."), "",
                 "| group | captions | generated | real renders |", "|---|---|---|---|"]
        for key in sorted(generated, key=lambda k: (k.split(" ")[0], k)):
            g, r = generated[key], renders.get(key, [])
            table.append(f"| {key} | {len(g)} | {sum(g) / len(g):.3f} | {sum(r) / max(1, len(r)):.3f} |")
        lines = [*table, "", *lines, "", CHANCE]
    emit("\n".join(lines) + "\n", args.out)

if __name__ == "__main__":
    main()
