"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12), in the VE view.

Notation:
    x        current sample, x = x0 + sigma * eps  (variance-exploding view; the paper's
             x_t / sqrt(alpha_t), with sigma^2 = (1 - alpha_t) / alpha_t)
    x0       the denoiser's estimate E[x0 | x]
    eps      the implied noise estimate (x - x0) / sigma
    sigma    noise level now; sigma_next the next one
    eta      the paper's eta: 0 is the deterministic DDIM, 1 the DDPM posterior (ancestral)
    sigma_up, sigma_down
             eq. 12's fresh-noise and predicted-noise coefficients divided by sqrt(alpha_{t-1}):
             sigma_up = eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2),
             sigma_down = sqrt(sigma_next^2 - sigma_up^2)
"""

from __future__ import annotations

import math

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of eq. 12 / eq. 16 of Song et al. 2021 in the VE view, for eta in [0, 1]."""
    if sigma_next == 0.0 or eta == 0.0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    sigma_down = math.sqrt(max(sigma_next**2 - sigma_up**2, 0.0))
    return sigma_down, sigma_up


def sample_ddim(x: Tensor, sigmas: Tensor, *, noise: NoiseFn, eta: float = 0.0) -> Sampler:
    """DDIM, Song et al. 2021 eq. 12: x_next = x0 + sigma_down * eps + sigma_up * z (fresh z only when sigma_up > 0)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        eps = (x - x0) / sigma
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x0 + sigma_down * eps
        if sigma_up > 0.0:
            x = x + sigma_up * noise()
    return x
