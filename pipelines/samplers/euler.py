"""Euler steps of the probability-flow ODE, deterministic and ancestral (Karras et al. 2022, Alg. 2 with S_churn = 0).

Notation:
    x        current sample, x = x0 + sigma * eps (variance-exploding view)
    x0       the denoiser's estimate E[x0 | x]
    d        dx/dsigma = (x - x0) / sigma, the PF-ODE direction (Karras et al. 2022, eq. 3 with s(t) = 1)
    sigma    noise level now; sigma_next the next one
    eta      ancestral noise fraction: each step goes down to sigma_down by the ODE and adds
             sigma_up of fresh noise (Song et al. 2021 eq. 12 in the VE view; eta = 1 is DDPM's posterior)
"""

from __future__ import annotations

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler
from pipelines.samplers.ddim import ancestral_step


def sample_euler(x: Tensor, sigmas: Tensor, *, noise: NoiseFn) -> Sampler:
    """Karras et al. 2022 Alg. 2 without churn and without the Heun correction: x += (sigma_next - sigma) * d."""
    del noise  # deterministic; the parameter keeps every sampler's signature the same
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        d = (x - x0) / sigma
        x = x + (sigma_next - sigma) * d
    return x


def sample_euler_ancestral(x: Tensor, sigmas: Tensor, *, noise: NoiseFn, eta: float = 1.0) -> Sampler:
    """Euler ancestral: an Euler ODE step to sigma_down, then sigma_up of fresh noise (Song et al. 2021 eq. 12)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        d = (x - x0) / sigma
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x + (sigma_down - sigma) * d
        if sigma_up > 0.0:
            x = x + sigma_up * noise()
    return x
