"""training/layout_leak.py: the occupancy probe reads a layout that is there and finds none in noise."""

from __future__ import annotations

import torch

from training.data import GRID
from training.layout_leak import cell_means, occupancy_probe


def _scenes(n: int, signal: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4, 12, 12) latents: noise plus `signal` in every occupied cell's block; occupancy (n, 9)."""
    occupied = (torch.rand(n, GRID * GRID, generator=generator) < 0.25).float()
    blocks = occupied.view(n, 1, GRID, GRID).repeat_interleave(4, 2).repeat_interleave(4, 3)
    latents = signal * blocks.expand(n, 4, 12, 12) + torch.randn(n, 4, 12, 12, generator=generator)
    return latents, occupied


def test_cell_means_pool_each_channel_per_cell() -> None:
    latents = torch.arange(2 * 4 * 12 * 12, dtype=torch.float32).view(2, 4, 12, 12)
    means = cell_means(latents)
    assert means.shape == (2, 4 * GRID * GRID)
    assert torch.allclose(means[0, 0], latents[0, 0, :4, :4].mean())
    assert torch.allclose(means[1, 4 * GRID * GRID - 1], latents[1, 3, 8:, 8:].mean())


def test_probe_reads_a_visible_layout_and_not_pure_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = _scenes(1200, 1.0, g)  # a block mean carries 4 noise std of signal
    assert occupancy_probe(cell_means(x[:900]), y[:900], cell_means(x[900:]), y[900:]) > 0.95
    noise, y = _scenes(1200, 0.0, g)
    assert abs(occupancy_probe(cell_means(noise[:900]), y[:900], cell_means(noise[900:]), y[900:]) - 0.5) < 0.06
