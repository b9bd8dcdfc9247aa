"""A reward model for the one-step student: a second per-cell classifier, and a caption's log-likelihood under it.

The judge scores the students, so it never trains them. The reward model answers the judge's question (per grid
cell: empty or which shape, its colour, its size) with another network (strided convolutions, no max-pooling,
narrower) trained on its own stream of renders (training.judge.train with its own data seed), so what a student
learns from it is checked by a model it never saw.

The reward of an image for a caption is log P(the caption holds) under the cells' independent predictions: the
caption holds in exactly one of the grid's layouts that satisfy it (its objects in distinct cells, the position
or relation kept, every other cell empty, stated sizes kept and open ones free), so the probability is the sum
over those layouts of the product over cells. It is differentiable in the image (training.reward_tune).

    python -m training.reward --out RUN --seconds S [--device cuda] [--batch B]
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checkpoint import load_weights, stage_parser
from training.data import COLOURS, GRID, SHAPES, SIZES, Caption, position_holds, relation_holds
from training.judge import train as train_cells

STAGE = "reward"
DATA_SEED = 50_000  # its scenes come from their own string seed (reward-train:50000:STEP), its render noise from 50,000 + step


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(8, cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.GELU())


class RewardModel(nn.Module):
    """The judge's outputs from another network: images (B, 3, 64, 64) in [0, 1] -> shape (B, 9, 7), colour
    (B, 9, 8), size (B, 9, 2) logits and a pooled feature (B, 160)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GELU())
        self.body = nn.Sequential(_down(32, 48), _down(48, 96), _down(96, 160))  # 32, 16, 8
        self.cells = nn.AdaptiveAvgPool2d(GRID)
        self.head = nn.Sequential(nn.Conv2d(160, 160, 1), nn.GELU(), nn.Conv2d(160, len(SHAPES) + 1 + len(COLOURS) + len(SIZES), 1))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h = self.body(self.stem(images * 2 - 1))
        logits = self.head(self.cells(h)).flatten(2).transpose(1, 2)
        s, c = len(SHAPES) + 1, len(COLOURS)
        return logits[..., :s], logits[..., s : s + c], logits[..., s + c :], h.mean(dim=(2, 3))


def load_reward(out: Path, device: torch.device) -> RewardModel:
    """RUN's reward model (OUT/reward/reward.safetensors), frozen."""
    model = RewardModel().to(device)
    if not load_weights(model, out / STAGE / f"{STAGE}.safetensors"):
        raise FileNotFoundError(f"{out / STAGE / (STAGE + '.safetensors')} missing: train it with python -m training.reward")
    return model.requires_grad_(False).eval()


@lru_cache(maxsize=4096)
def caption_layouts(caption: Caption) -> tuple[Tensor, Tensor, Tensor]:
    """Every grid layout in which the caption holds, as per-cell targets (P, 9): shape (0 = empty, else shape + 1),
    colour and size (-1 where a cell is empty or the caption leaves the size open)."""
    cells = [c for c in itertools.permutations(range(GRID * GRID), len(caption.objects))
             if (caption.position is None or position_holds(c[0], caption.position))
             and (caption.relation is None or relation_holds(c[0], c[1], caption.relation))]
    shape = torch.zeros(len(cells), GRID * GRID, dtype=torch.long)
    colour = torch.full((len(cells), GRID * GRID), -1, dtype=torch.long)
    size = torch.full((len(cells), GRID * GRID), -1, dtype=torch.long)
    for row, layout in enumerate(cells):
        for obj, cell in zip(caption.objects, layout):
            shape[row, cell] = obj.shape + 1
            colour[row, cell] = obj.colour
            size[row, cell] = -1 if obj.size is None else obj.size
    return shape, colour, size


def _cell_log_probs(log_probs: Tensor, targets: Tensor) -> Tensor:
    """log_probs (9, K), targets (P, 9) with -1 = not scored -> (P, 9), 0 where not scored."""
    scored = targets >= 0
    picked = log_probs.unsqueeze(0).expand(targets.shape[0], -1, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1))
    return picked.squeeze(-1) * scored


def caption_log_likelihood(logits: tuple[Tensor, Tensor, Tensor], captions: list[Caption]) -> Tensor:
    """log P(caption holds) per image (B,) from per-cell logits (shape (B, 9, 7), colour (B, 9, 8), size (B, 9, 2))."""
    ls, lc, lz = (F.log_softmax(x.float(), dim=-1) for x in logits)
    out = []
    for i, caption in enumerate(captions):
        shape, colour, size = (t.to(ls.device) for t in caption_layouts(caption))
        per_layout = (_cell_log_probs(ls[i], shape) + _cell_log_probs(lc[i], colour) + _cell_log_probs(lz[i], size)).sum(-1)
        out.append(torch.logsumexp(per_layout, dim=0))
    return torch.stack(out)


def caption_reward(model: nn.Module, images: Tensor, captions: list[Caption]) -> Tensor:
    """log P(caption holds) (B,) of images (B, 3, 64, 64) in [0, 1] under the reward model; differentiable."""
    shape, colour, size, _ = model(images)
    return caption_log_likelihood((shape, colour, size), captions)


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 2e-3) -> dict[str, float]:
    """Train (or resume) the reward model for `seconds`; returns its held-out cell accuracy (the judge's measure)."""
    return train_cells(out, seconds, device, batch, lr, model=RewardModel(), stage=STAGE, data_seed=DATA_SEED)


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: the GPU batch, or 8 on CPU")
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    print(STAGE, train(args.out, args.seconds, torch.device(args.device), batch=args.batch, lr=args.lr), flush=True)


if __name__ == "__main__":
    main()
