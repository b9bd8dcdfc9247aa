"""Test helpers: a fixed eps-prediction model and the diffusers scheduler loop it drives (test oracle only).

The same model output function feeds both sides: diffusers' scheduler loop in the VP view
(x_vp, integer timestep t) and our sampler through a denoiser doing the VP <-> VE conversion:
x_vp = x / sqrt(1 + sigma^2), t = sigma_to_t(sigma), x0 = x - sigma * eps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipelines.schedules import DiscreteSchedule, training_schedule

SD15_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
LATENT_SHAPE = (2, 4, 8, 8)  # two images of one request, (N, C, H, W)


def sd15_schedule() -> DiscreteSchedule:
    """Stable Diffusion 1.5's training schedule (scaled_linear 0.00085 .. 0.012, T = 1000)."""
    return training_schedule("scaled_linear", 0.00085, 0.012, 1000)


class EpsModel:
    """A deterministic eps(x_vp, t): x_vp through a fixed near-identity channel mix, plus a timestep-dependent bias.

    Near-identity keeps the implied x0 of unit-scale latents bounded, so final latents are O(1)
    and an absolute tolerance means what it says.
    """

    def __init__(self, channels: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.eye(channels) + 0.1 * torch.randn(
            channels, channels, generator=g
        )  # (C, C)
        self.bias = 0.2 * torch.randn(channels, generator=g)  # (C,)

    def __call__(self, x_vp: Tensor, t: Tensor | float) -> Tensor:
        """(N, C, H, W), timestep (scalar or (N,)) -> eps (N, C, H, W), float32."""
        t_rows = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1, 1, 1)  # (N or 1, 1, 1, 1)
        mixed = torch.einsum("dc,nchw->ndhw", self.mix, x_vp.float())
        return mixed + 0.5 * torch.sin(t_rows / 150.0) * self.bias.reshape(1, -1, 1, 1)


def ve_denoiser(model: EpsModel, schedule: DiscreteSchedule):
    """The denoiser contract over `model`: denoise(x, sigma_rows) -> x0 in the VE view."""

    def denoise(x: Tensor, sigma_rows: Tensor) -> Tensor:
        sigma = sigma_rows.reshape(-1, 1, 1, 1)  # (N, 1, 1, 1) float64
        x_vp = (x / (1 + sigma**2).sqrt()).float()
        t = schedule.sigma_to_t(sigma_rows)  # (N,) continuous timesteps, integers on table values
        eps = model(x_vp, t)
        return (x - sigma * eps).float()

    return denoise


def lcm_denoiser(model: EpsModel, schedule: DiscreteSchedule, timestep_scaling: float = 10.0):
    """LCM's consistency function over an eps model (Luo et al. 2023, eq. 9 boundary scalings c_skip, c_out)."""
    sigma_data = 0.5

    def denoise(x: Tensor, sigma_rows: Tensor) -> Tensor:
        sigma = sigma_rows.reshape(-1, 1, 1, 1)
        x_vp = (x / (1 + sigma**2).sqrt()).float()
        t = schedule.sigma_to_t(sigma_rows)
        eps = model(x_vp, t)
        scaled_t = (t * timestep_scaling).reshape(-1, 1, 1, 1)
        c_skip = sigma_data**2 / (scaled_t**2 + sigma_data**2)
        c_out = scaled_t / (scaled_t**2 + sigma_data**2).sqrt()
        return (c_out * (x - sigma * eps) + c_skip * x_vp).float()

    return denoise


def diffusers_loop(
    scheduler, model: EpsModel, latents: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """The scheduler loop as diffusers' pipelines run it (scaled model input, step per timestep)."""
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        eps = model(model_input, t)
        if generator is None:
            latents = scheduler.step(eps, t, latents).prev_sample
        else:
            latents = scheduler.step(eps, t, latents, generator=generator).prev_sample
    return latents
