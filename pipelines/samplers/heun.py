"""Heun's second-order solver of the probability-flow ODE (Karras et al. 2022, Alg. 2 with S_churn = 0).

Notation:
    x        current sample, x = x0 + sigma * eps (variance-exploding view)
    x0       the denoiser's estimate E[x0 | x]
    d        dx/dsigma = (x - x0) / sigma (Karras et al. 2022, eq. 3 with s(t) = 1)
    sigma    noise level now; sigma_next the next one
    x_euler  the Euler predictor at sigma_next; d_next its slope there
"""

from __future__ import annotations

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler


def sample_heun(x: Tensor, sigmas: Tensor, *, noise: NoiseFn) -> Sampler:
    """Karras et al. 2022 Alg. 2 (S_churn = 0): Euler predictor, trapezoidal corrector; the step to sigma = 0 is Euler."""
    del noise  # deterministic
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        d = (x - x0) / sigma
        x_euler = x + (sigma_next - sigma) * d
        if sigma_next == 0.0:
            # Alg. 2 line 9: d_next would divide by sigma_next = 0
            x = x_euler
            continue
        x0_next = yield x_euler, sigmas[i + 1]
        d_next = (x_euler - x0_next) / sigma_next
        x = x + (sigma_next - sigma) * 0.5 * (d + d_next)
    return x
