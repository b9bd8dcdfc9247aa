"""The training-side diffusion schedule and a minimal batched DDIM sampler.

Notation (Ho et al. 2020; Song et al. 2021, DDIM): alpha_bar_t is the cumulative product of
(1 - beta_t); x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps; the model predicts eps.
The serving path uses pipelines.samplers; this module exists so training (previews, in-run
metrics, the distillation teacher's solver) depends on nothing still being built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012  # "scaled_linear", as SD1.x

SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
    "beta_start": BETA_START,
    "beta_end": BETA_END,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def alphas_cumprod(device: torch.device | str = "cpu") -> Tensor:
    """alpha_bar_t for t = 0..999 of the scaled_linear schedule (float64)."""
    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, NUM_TRAIN_TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(device)


def add_noise(x0: Tensor, eps: Tensor, t: Tensor, alpha_bar: Tensor) -> Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (Ho et al. 2020, eq. 4); t (B,) long."""
    a = alpha_bar[t].to(x0.dtype).view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def leading_timesteps(steps: int) -> list[int]:
    """Descending timesteps with 'leading' spacing and offset 1 (the SD1 scheduler config)."""
    stride = NUM_TRAIN_TIMESTEPS // steps
    return [i * stride + 1 for i in range(steps)][::-1]


EpsFn = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, C, H, W), t (B,) long) -> eps


def even_timesteps(start: int, steps: int) -> list[int]:
    """`steps` descending timesteps evenly spaced from `start` (DDIM from a partly noised x_start)."""
    stride = (start + 1) / steps
    return [round(start - i * stride) for i in range(steps)]


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, noise: Tensor, steps: int, alpha_bar: Tensor, t_start: int | None = None,
                clean: bool = False) -> Tensor:
    """Deterministic DDIM, eta = 0 (Song et al. 2021, eq. 12), `steps` steps from x_T = noise (leading
    spacing), or with `t_start` from x_t = noise at t_start (even_timesteps); returns the latents at t = 0
    (alpha_bar_0 < 1, as the served scheduler), or with `clean` the last step's x0 prediction."""
    x = noise
    timesteps = leading_timesteps(steps) if t_start is None else even_timesteps(t_start, steps)
    for i, t in enumerate(timesteps):
        a_t = alpha_bar[t].to(x.dtype)
        a_prev = alpha_bar[timesteps[i + 1]].to(x.dtype) if i + 1 < len(timesteps) else alpha_bar[0].to(x.dtype)
        eps = eps_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if clean and i + 1 == len(timesteps):
            return x0
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x
