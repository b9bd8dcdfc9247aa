"""Test helpers: Gaussian data with an exact denoiser, and drivers for samplers.

Data x0 ~ N(mu, s^2) independently per dimension, so p_sigma = N(mu, s^2 + sigma^2) and
E[x0 | x] = (s^2 x + sigma^2 mu) / (s^2 + sigma^2) exactly (Tweedie / Gaussian conditioning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler, make_sampler, run, seeded_noise


@dataclass(frozen=True)
class GaussianData:
    """x0 ~ N(mu, s^2) per dimension."""

    mu: float
    s: float

    def denoise(self, x: Tensor, sigma_rows: Tensor) -> Tensor:
        """E[x0 | x] at per-row sigma: (s^2 x + sigma^2 mu) / (s^2 + sigma^2)."""
        sigma2 = sigma_rows.to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1)) ** 2  # (N, 1, ...)
        return (self.s**2 * x + sigma2 * self.mu) / (self.s**2 + sigma2)

    def consistency(self, x: Tensor, sigma_rows: Tensor) -> Tensor:
        """The PF-ODE flow map from sigma to 0 (an ideal consistency function): mu + s (x - mu) / sqrt(s^2 + sigma^2)."""
        sigma2 = sigma_rows.to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1)) ** 2
        return self.mu + self.s * (x - self.mu) / (self.s**2 + sigma2).sqrt()

    def initial(
        self, shape: tuple[int, ...], sigma_max: float, generator: torch.Generator
    ) -> Tensor:
        """A draw from the exact marginal p_sigma_max = N(mu, s^2 + sigma_max^2), float32 like latents."""
        z = torch.randn(shape, generator=generator, dtype=torch.float32)
        return self.mu + (self.s**2 + sigma_max**2) ** 0.5 * z


# Monte Carlo size of the moment tests: 20 rows x 1000 dimensions = 20,000 scalar samples of
# N(MU, S^2). Standard errors: mean S / sqrt(n) = 0.0057, variance sqrt(2 / n) = 1.0% relative.
MOMENT_SHAPE = (20, 1000)
MU, S = 0.5, 0.8
MEAN_TOL = 0.025  # absolute, ~4.4 standard errors
VAR_RTOL = 0.05  # relative; room for ~2% discretisation / corrector bias plus 3 standard errors


def sample_moments(
    name: str,
    data: GaussianData,
    sigmas: Tensor,
    seed: int,
    *,
    shape: tuple[int, ...] = MOMENT_SHAPE,
    denoise: Callable[[Tensor, Tensor], Tensor] | None = None,
    **options: object,
) -> tuple[float, float]:
    """Run sampler `name` from the exact marginal on float32 x of `shape`; return (mean, variance)."""
    g = torch.Generator().manual_seed(seed)
    x = data.initial(shape, float(sigmas[0]), g)
    sampler = make_sampler(name, x, sigmas, seeded_noise(x, g), **options)  # type: ignore[arg-type]
    out = run(sampler, data.denoise if denoise is None else denoise)
    return float(out.mean()), float(out.var())


def assert_moments(mean: float, var: float, data: GaussianData, var_rtol: float = VAR_RTOL) -> None:
    """The sample mean and variance match the data's within MEAN_TOL and var_rtol."""
    assert abs(mean - data.mu) < MEAN_TOL, f"mean {mean:.4f} vs {data.mu}"
    assert abs(var / data.s**2 - 1) < var_rtol, (
        f"variance {var:.4f} vs {data.s**2} (rtol {var_rtol})"
    )


def count_calls(
    sampler: Sampler, denoise: Callable[[Tensor, Tensor], Tensor]
) -> tuple[Tensor, int]:
    """Run a sampler alone and count its model evaluations."""
    calls = 0

    def counted(x: Tensor, sigma_rows: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return denoise(x, sigma_rows)

    return run(sampler, counted), calls


def drive_lockstep(
    samplers: list[Sampler], denoise: Callable[[Tensor, Tensor], Tensor]
) -> list[Tensor]:
    """Drive several samplers together, one batched denoise call per round (as the engine does).

    Each round stacks the pending (x, sigma) of every unfinished sampler along rows, calls
    `denoise` once with per-row sigmas, and hands each sampler its own slice.
    """
    results: list[Tensor | None] = [None] * len(samplers)
    pending: dict[int, tuple[Tensor, Tensor]] = {}
    for i, sampler in enumerate(samplers):
        pending[i] = next(sampler)
    while pending:
        order = sorted(pending)
        xs = [pending[i][0] for i in order]
        sigma_rows = torch.cat(
            [pending[i][1].to(torch.float64).expand(pending[i][0].shape[0]) for i in order]
        )
        x0 = denoise(torch.cat(xs), sigma_rows)
        start = 0
        for i, x in zip(order, xs):
            rows = x0[start : start + x.shape[0]]
            start += x.shape[0]
            try:
                pending[i] = samplers[i].send(rows)
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return [r for r in results if r is not None]


def replay_noise(draws: list[Tensor]) -> NoiseFn:
    """A noise() that returns recorded tensors in order (to feed a sampler the oracle's noise)."""
    queue = list(draws)

    def noise() -> Tensor:
        return queue.pop(0)

    return noise
