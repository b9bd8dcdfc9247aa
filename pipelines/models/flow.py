"""Rectified-flow velocity models (Liu et al. 2022; Esser et al. 2024, SD3) as denoise -> x0.

Notation: the model sees x_t = (1 - t) x0 + t eps at t in [0, 1] and predicts the velocity
v = eps - x0. In the variance-exploding view x = x_t / (1 - t) = x0 + sigma eps with
    sigma = t / (1 - t),   t = sigma / (1 + sigma),   x0 = x_t - t v.
DDIM in this view is exactly the flow's Euler step. SD3's timestep shift s maps
t -> s t / (1 + (s - 1) t) (Esser et al. 2024, eq. 23).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pipelines import schedules
from pipelines.conditioning import Conditioning

VelocityModel = Callable[[Tensor, Tensor, Conditioning], Tensor]  # (x_t, t in [0, 1], cond) -> v


class FlowDenoiser:
    """A velocity model v(x_t, t, cond) wrapped into x -> x0."""

    default_spacing = "flow"

    def __init__(self, velocity: VelocityModel, *, shift: float = 1.0, num_train_timesteps: int = 1000) -> None:
        self.velocity = velocity
        self.shift = shift
        self.num_train_timesteps = num_train_timesteps
        # t = 1 is sigma = inf; sampling starts at schedules.FLOW_T_MAX just below it
        self.sigma_max = schedules.FLOW_T_MAX / (1.0 - schedules.FLOW_T_MAX)
        self.sigma_min = 0.0

    def prior_scale(self, sigma: float) -> float:
        """x = x_t / (1 - t) with x_t ~ noise: the scale is 1 / (1 - t) = 1 + sigma."""
        return 1.0 + sigma

    def to_decoder_input(self, x: Tensor, sigma: float) -> Tensor:
        """x_t = x / (1 + sigma)."""
        return x / (1.0 + sigma)

    def sigmas(self, steps: int, spacing: str | None = None, *, final_sigma: float | None = None) -> Tensor:
        """Descending sigmas of the shifted flow schedule (pipelines.schedules.sigmas_flow), ending at 0."""
        sigmas = schedules.sigmas_flow(steps, self.shift, num_train_timesteps=self.num_train_timesteps)
        if final_sigma is not None:
            sigmas[-1] = final_sigma
        return sigmas

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor:
        """x (B, C, h, w) at per-row sigma (B,) -> x0 = x_t - t v."""
        shape = (-1, *([1] * (x.dim() - 1)))
        sigma64 = sigma.to(torch.float64)
        t = sigma64 / (1.0 + sigma64)  # (B,)
        x_t = x / (1.0 + sigma64).to(x.dtype).view(shape)
        v = self.velocity(x_t, t.to(x.dtype), cond).to(x.dtype)
        return x_t - t.to(x.dtype).view(shape) * v
