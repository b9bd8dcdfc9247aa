"""The same seed gives the same latents alone and inside a batch of 4 requests sharing forward passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.samplers import Sampler, make_sampler, run, seeded_noise
from pipelines.schedules import make_sigmas
from tests.pipelines.samplers.analytic import drive_lockstep
from tests.pipelines.samplers.oracle import sd15_schedule

ROWS_PER_REQUEST = 2  # each request asks for two images
SHAPE = (ROWS_PER_REQUEST, 4, 8, 8)


class TinyDenoiser:
    """A small random conv net in the denoiser contract; batched convolutions, per-row sigma."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(5, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 4, 3, padding=1)
        ).eval()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma_rows: torch.Tensor) -> torch.Tensor:
        sigma = sigma_rows.reshape(-1, 1, 1, 1).float()  # (N, 1, 1, 1)
        x_in = x.float() / (1 + sigma**2).sqrt()
        level = (sigma.log() / 4).expand(-1, 1, *x.shape[2:])  # (N, 1, H, W) noise-level channel
        eps = self.net(torch.cat([x_in, level], dim=1))
        return x.float() - sigma * eps


def _request(name: str, steps: int, seed: int, options: dict[str, float]) -> Sampler:
    sigmas = make_sigmas(sd15_schedule(), steps, "lcm" if name == "lcm" else "leading")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g) * float((1 + sigmas[0] ** 2).sqrt())
    return make_sampler(name, x, sigmas, seeded_noise(x, g), **options)  # type: ignore[arg-type]


# the three neighbours run other samplers at other step counts, so each batch mixes sigmas
NEIGHBOURS = [("heun", 7, {}), ("pc", 5, {}), ("euler_ancestral", 12, {})]


@pytest.mark.parametrize(
    ("name", "steps", "options"),
    [
        ("ddpm", 10, {}),
        ("pc", 6, {}),
        ("euler_ancestral", 9, {}),
        ("ddim", 8, {"eta": 0.5}),
        ("lcm", 4, {}),
        ("dpmpp_2m", 9, {}),
        ("heun", 5, {}),
    ],
)
def test_same_seed_alone_and_in_a_batch_of_four(
    name: str, steps: int, options: dict[str, float]
) -> None:
    denoise = TinyDenoiser()
    alone = run(_request(name, steps, seed=100, options=options), denoise)
    batch = [_request(name, steps, seed=100, options=options)] + [
        _request(n, s, seed=101 + i, options=o) for i, (n, s, o) in enumerate(NEIGHBOURS)
    ]
    together = drive_lockstep(batch, denoise)
    assert together[0].shape == alone.shape == SHAPE
    assert float((together[0] - alone).abs().max()) <= 1e-5
    # the neighbours really were different requests
    assert float((together[1] - alone).abs().max()) > 1e-2


def test_same_sampler_four_seeds_in_lockstep() -> None:
    """Four requests of the same stochastic sampler, one batched call per step: each equals its run alone."""
    denoise = TinyDenoiser()
    alone = [run(_request("euler_ancestral", 10, seed=s, options={}), denoise) for s in range(4)]
    together = drive_lockstep(
        [_request("euler_ancestral", 10, seed=s, options={}) for s in range(4)], denoise
    )
    for a, b in zip(alone, together):
        assert float((a - b).abs().max()) <= 1e-5
