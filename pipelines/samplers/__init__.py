"""Samplers as generators, and `run` to drive one request alone.

A sampler is a generator function `sample_<name>(x, sigmas, *, noise, ...)`: it yields
`(x, sigma)` each time it needs the model and receives x0 = E[x0 | x] back:

    x0 = yield x, sigma

`x` is (N, C, H, W) in the variance-exploding view (x = x0 + sigma * eps); `sigma` is a 0-d
float64 tensor; `sigmas` is a descending 1-d float64 tensor from a schedule function
(pipelines.schedules), whose last entry is where sampling stops (0, or the schedule's smallest
sigma). `noise()` returns a fresh standard normal tensor shaped like x from the request's own
seeded generator: the only source of randomness. The generator returns the final x.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import torch
from torch import Tensor

NoiseFn = Callable[[], Tensor]
Sampler = Generator[tuple[Tensor, Tensor], Tensor, Tensor]


def seeded_noise(like: Tensor, generator: torch.Generator) -> NoiseFn:
    """A noise function drawing from `generator` (on the generator's device) shaped like `like`."""

    def noise() -> Tensor:
        z = torch.randn(like.shape, generator=generator, device=generator.device, dtype=torch.float32)
        return z.to(device=like.device, dtype=like.dtype)

    return noise


def run(sampler: Sampler, denoise: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Drive one sampler alone: `denoise(x, sigma_rows)` with sigma broadcast to x's rows."""
    try:
        x, sigma = next(sampler)
        while True:
            sigma_rows = sigma.to(torch.float64).expand(x.shape[0]).to(x.device)
            x, sigma = sampler.send(denoise(x, sigma_rows))
    except StopIteration as stop:
        return stop.value
