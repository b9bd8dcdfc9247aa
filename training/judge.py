"""The judge: a per-cell attribute classifier that scores whether an image matches its caption.

Trained on renders of every (shape, colour) pair - including the pairs held out from the
generator, which it must recognise to score them - with blur, noise and colour-shift
augmentation so that decoded samples look in-distribution. Scoring a caption matches the
mentioned objects to the judge's detected objects (all permutations; at most 3 objects).

    python -m training.judge --out DIR --seconds S [--device cuda]
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checkpoint import (
    Deadline,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_main,
)
from training.data import (
    GRID,
    Caption,
    cell_targets,
    position_holds,
    relation_holds,
    render,
    sample_layout_scene,
    scenes_to_batch,
    uniform_source,
)
from training.models import Judge

STAGE = "judge"


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random blur, pixel noise and a global colour shift: (B, 3, H, W) -> same."""
    b = images.shape[0]
    device = images.device
    uniform = uniform_source(generator, device)
    kernel = torch.tensor([0.25, 0.5, 0.25], device=device)
    kernel = (kernel.view(3, 1) * kernel.view(1, 3)).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    mix = uniform(b, 1, 1, 1) * (uniform(b, 1, 1, 1) < 0.5).float()
    images = images * (1 - mix) + blurred * mix
    noise_std = 0.04 * uniform(b, 1, 1, 1)
    noise = torch.randn(images.shape, generator=generator, device=generator.device).to(device)
    images = images + noise_std * noise + 0.06 * (uniform(b, 3, 1, 1) - 0.5)
    return images.clamp(0, 1)


def judge_loss(judge: nn.Module, images: Tensor, targets: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Cross-entropy over cells: shape (incl. empty) everywhere, colour and size where occupied."""
    shape_logits, colour_logits, size_logits, _ = judge(images)
    shape_t, colour_t, size_t = targets
    loss = F.cross_entropy(shape_logits.flatten(0, 1), shape_t.flatten())
    loss = loss + F.cross_entropy(colour_logits.flatten(0, 1), colour_t.flatten(), ignore_index=-1)
    return loss + F.cross_entropy(size_logits.flatten(0, 1), size_t.flatten(), ignore_index=-1)


@torch.no_grad()
def cell_accuracy(judge: nn.Module, seed: int, count: int, device: torch.device, batch: int = 256) -> dict[str, float]:
    """Per-attribute accuracy on fresh renders (all pairs): occupancy + shape over all cells;
    colour and size over occupied cells; `scene` = every cell of the image right."""
    rng = random.Random(f"judge-eval:{seed}")
    gen = torch.Generator(device=device).manual_seed(seed)
    totals = {"shape": 0.0, "colour": 0.0, "size": 0.0, "scene": 0.0}
    counts = {"shape": 0, "colour": 0, "size": 0, "scene": 0}
    done = 0
    while done < count:
        n = min(batch, count - done)
        sb = scenes_to_batch([sample_layout_scene(rng) for _ in range(n)]).to(device)
        images = render(sb, gen)
        shape_t, colour_t, size_t = cell_targets(sb)
        s, c, z, _ = judge(images)
        s, c, z = s.argmax(-1), c.argmax(-1), z.argmax(-1)
        occupied = shape_t > 0
        totals["shape"] += (s == shape_t).float().sum().item()
        counts["shape"] += shape_t.numel()
        totals["colour"] += (c == colour_t)[occupied].float().sum().item()
        totals["size"] += (z == size_t)[occupied].float().sum().item()
        counts["colour"] += int(occupied.sum())
        counts["size"] += int(occupied.sum())
        right = (s == shape_t) & ((c == colour_t) | ~occupied) & ((z == size_t) | ~occupied)
        totals["scene"] += right.all(dim=1).float().sum().item()
        counts["scene"] += n
        done += n
    return {k: totals[k] / counts[k] for k in totals}


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 2e-3,
          model: nn.Module | None = None, stage: str = STAGE, data_seed: int = 1000) -> dict[str, float]:
    """Train (or resume) the judge for `seconds` of wall clock; returns held-out accuracy.

    `model`, `stage` and `data_seed` train another per-cell classifier of the judge's outputs the same way, on
    its own stream of renders (training.reward's reward model: OUT/STAGE/STAGE.safetensors)."""
    deadline = Deadline(seconds)
    batch = batch or (256 if device.type == "cuda" else 8)
    directory = out / stage
    judge = (model or Judge()).to(device)
    load_weights(judge, directory / f"{stage}.safetensors")
    state = load_state(directory)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    if (directory / "optimizer.pt").exists():
        opt.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device))
    rng = random.Random(f"{stage}-train:{state.step}" if data_seed == 1000 else f"{stage}-train:{data_seed}:{state.step}")
    gen = torch.Generator(device=device).manual_seed(data_seed + state.step)
    eval_reserve = 15.0 if device.type == "cuda" else 0.2 * seconds
    while deadline.left() > eval_reserve:
        sb = scenes_to_batch([sample_layout_scene(rng) for _ in range(batch)]).to(device)
        images = augment(render(sb, gen), gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = judge_loss(judge, images, cell_targets(sb))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        if state.step % 10 == 0:
            state.log("loss", loss.item())
    judge.eval()
    metrics = cell_accuracy(judge, seed=7, count=2048 if device.type == "cuda" else 64, device=device)
    state.metrics.update({f"heldout_{k}_accuracy": v for k, v in metrics.items()})
    state.elapsed_s += deadline.elapsed()
    save_weights(judge, directory / f"{stage}.safetensors")
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    save_state(directory, state, f"{stage}: cross-entropy per cell")
    return metrics


@dataclass(frozen=True)
class DetectedObject:
    cell: int
    shape: int
    colour: int
    size: int


@torch.no_grad()
def detect(judge: Judge, images: Tensor) -> tuple[list[list[DetectedObject]], Tensor]:
    """Objects per image (cells whose shape is not empty) and the judge features (B, 256)."""
    s, c, z, feature = judge(images.float())
    s, c, z = s.argmax(-1).cpu(), c.argmax(-1).cpu(), z.argmax(-1).cpu()
    out = []
    for i in range(images.shape[0]):
        out.append([DetectedObject(k, int(s[i, k]) - 1, int(c[i, k]), int(z[i, k])) for k in range(GRID * GRID) if s[i, k] > 0])
    return out, feature.float()


def score_caption(detected: list[DetectedObject], caption: Caption) -> dict[str, bool | None]:
    """Per-attribute and whole-caption agreement of detected objects with a caption.

    count/shape/colour: the multisets agree; size: some (shape, colour)-matching assignment
    also matches every stated size; position: some such assignment satisfies the caption's
    position or relation (None when the caption states none); caption: one assignment
    satisfies everything and nothing extra is in the image.
    """
    mentioned = caption.objects
    result: dict[str, bool | None] = {
        "count": len(detected) == len(mentioned),
        "shape": sorted(d.shape for d in detected) == sorted(m.shape for m in mentioned),
        "colour": sorted(d.colour for d in detected) == sorted(m.colour for m in mentioned),
    }
    size_ok = place_ok = whole = False
    for perm in itertools.permutations(detected, len(mentioned)):
        if not all(d.shape == m.shape and d.colour == m.colour for d, m in zip(perm, mentioned)):
            continue
        sizes = all(m.size is None or d.size == m.size for d, m in zip(perm, mentioned))
        place = True
        if caption.position is not None:
            place = position_holds(perm[0].cell, caption.position)
        if caption.relation is not None:
            place = relation_holds(perm[0].cell, perm[1].cell, caption.relation)
        size_ok |= sizes
        place_ok |= place
        whole |= sizes and place
    result["size"] = size_ok if any(m.size is not None for m in mentioned) else None
    result["position"] = place_ok if (caption.position or caption.relation) else None
    result["caption"] = whole and len(detected) == len(mentioned)
    return result


def caption_accuracy(judge: Judge, images: Tensor, captions: list[Caption]) -> tuple[dict[str, float], Tensor]:
    """Mean agreement per attribute and for whole captions over a batch of images (B, 3, H, W);
    attributes a caption does not state are left out of their mean. Also the judge features."""
    totals: dict[str, list[float]] = {}
    features = []
    for start in range(0, images.shape[0], 256):
        detected, feature = detect(judge, images[start : start + 256])
        features.append(feature)
        for objs, caption in zip(detected, captions[start : start + 256]):
            for key, value in score_caption(objs, caption).items():
                if value is not None:
                    totals.setdefault(key, []).append(float(value))
    return {k: sum(v) / len(v) for k, v in totals.items()}, torch.cat(features)


def main() -> None:
    stage_main(__doc__.splitlines()[0], STAGE, train)


if __name__ == "__main__":
    main()
