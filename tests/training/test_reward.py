"""training/reward.py: the caption's log-likelihood under per-cell predictions agrees with the judge's scoring rule,
and its gradient reaches the image."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from training.data import GRID, Caption, ObjectSpec, hard_negative, sample_scenes
from training.judge import DetectedObject, score_caption
from training.reward import RewardModel, caption_layouts, caption_log_likelihood, caption_reward


def one_hot_logits(objects: list[DetectedObject], confidence: float = 30.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-cell logits (1, 9, K) that put all their mass on the given detections (every other cell empty)."""
    shape = torch.zeros(GRID * GRID, dtype=torch.long)
    colour = torch.zeros(GRID * GRID, dtype=torch.long)
    size = torch.zeros(GRID * GRID, dtype=torch.long)
    for d in objects:
        shape[d.cell], colour[d.cell], size[d.cell] = d.shape + 1, d.colour, d.size
    return tuple(confidence * F.one_hot(t, k).float().unsqueeze(0) for t, k in ((shape, 7), (colour, 8), (size, 2)))  # type: ignore[return-value]


def test_layouts_are_the_grids_in_which_the_caption_holds() -> None:
    left = Caption("a green ring on the left", (ObjectSpec(5, 3, None),), position="left")
    shape, colour, size = caption_layouts(left)
    assert shape.shape == (3, 9) and set(shape.nonzero()[:, 1].tolist()) == {0, 3, 6}
    assert (size == -1).all() and (colour[shape == 0] == -1).all()
    pair = Caption("a small red circle left of a blue square", (ObjectSpec(0, 0, 0), ObjectSpec(1, 4, None)), relation="left_of")
    shape, _, size = caption_layouts(pair)
    # the circle's column is left of the square's: 3 x 3 cells per column pair, 3 column pairs
    assert shape.shape[0] == 27 and ((shape == 1).sum(1) == 1).all() and ((shape == 2).sum(1) == 1).all()
    assert (size[shape == 1] == 0).all() and (size[shape == 2] == -1).all()
    three = Caption("a red circle, a blue square and a green ring", tuple(ObjectSpec(s, c, None) for s, c in ((0, 0), (1, 4), (5, 3))))
    assert caption_layouts(three)[0].shape[0] == 9 * 8 * 7


def test_confident_predictions_give_probability_one_exactly_where_the_judge_says_the_caption_holds() -> None:
    """For confident per-cell predictions, P(caption holds) is ~1 where training.judge.score_caption reads the whole
    caption as right and ~0 where it does not: on scenes drawn for their captions, on their hard negatives, and
    on random detections."""
    rng = random.Random(0)
    agree = held = 0
    for scene in sample_scenes(5, 300, "train") + sample_scenes(6, 100, "heldout"):
        truth = [DetectedObject(cell, o.shape, o.colour, z) for cell, o, z in zip(scene.cells, scene.caption.objects, scene.sizes)]
        noise = [DetectedObject(cell, rng.randrange(6), rng.randrange(8), rng.randrange(2))
                 for cell in rng.sample(range(9), rng.randrange(1, 4))]
        for detected in (truth, noise):
            logits = one_hot_logits(detected)
            for caption in (scene.caption, hard_negative(scene.caption, rng)):
                p = caption_log_likelihood(logits, [caption]).exp().item()
                holds = bool(score_caption(detected, caption)["caption"])
                assert (p > 0.99) == holds and (p < 0.01) != holds, (caption.text, detected, p)
                agree += 1
                held += holds
    assert agree == 1600 and 400 <= held < 1600  # every scene's own caption holds, its negative never


def test_likelihood_is_the_sum_over_layouts_of_the_cells_product() -> None:
    """Two equally likely cells for a lone circle: P = 0.5 + 0.5 when both are allowed, 0.5 when one is."""
    shape = torch.full((1, 9, 7), -30.0)
    shape[0, :, 0] = 30.0  # every cell empty ...
    shape[0, 0, :] = -30.0
    shape[0, 0, 0] = shape[0, 0, 1] = 0.0  # ... but cell 0: empty or a circle, even odds
    colour, size = torch.zeros(1, 9, 8), torch.zeros(1, 9, 2)
    colour[0, :, 2] = 30.0
    circle = Caption("a yellow circle", (ObjectSpec(0, 2, None),))
    right = Caption("a yellow circle on the right", (ObjectSpec(0, 2, None),), position="right")
    assert abs(caption_log_likelihood((shape, colour, size), [circle]).exp().item() - 0.5) < 1e-4
    assert caption_log_likelihood((shape, colour, size), [right]).exp().item() < 1e-6
    large = Caption("a large yellow circle", (ObjectSpec(0, 2, 1),))
    assert abs(caption_log_likelihood((shape, colour, size), [large]).exp().item() - 0.25) < 1e-4  # size: even odds


def test_reward_gradient_reaches_the_image() -> None:
    torch.manual_seed(0)
    model = RewardModel().eval()
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    captions = [s.caption for s in sample_scenes(1, 2, "train")]
    reward = caption_reward(model, images, captions)
    assert reward.shape == (2,) and (reward <= 0).all()
    reward.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
