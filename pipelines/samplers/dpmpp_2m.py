"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2, multistep second order in x0), in the VE view.

Notation:
    x        current sample, x = x0 + sigma * eps (variance-exploding view; the paper's x_t / alpha_t)
    x0       the denoiser's estimate E[x0 | x] (the paper's data prediction x_theta)
    lambda   log-SNR half: lambda = -log(sigma) (the paper's log(alpha_t / sigma_t))
    h        lambda_next - lambda, the step in lambda; h_last the previous step's
    r        h_last / h
    D        the second-order data estimate (1 + 1/(2r)) x0 - 1/(2r) x0_last
"""

from __future__ import annotations

import math

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler

# diffusers' DPMSolverMultistepScheduler takes a first-order final step below this many steps
LOWER_ORDER_FINAL_BELOW_STEPS = 15


def sample_dpmpp_2m(x: Tensor, sigmas: Tensor, *, noise: NoiseFn, lower_order_final: bool = True) -> Sampler:
    """Lu et al. 2022 Alg. 2: x_next = (sigma_next / sigma) x - expm1(-h) D, first order on the first step.

    The final step is first order when it ends at sigma = 0 (h is infinite there: x_next = x0),
    and also, when `lower_order_final`, for runs of fewer than 15 steps, as diffusers does.
    """
    del noise  # deterministic
    steps = len(sigmas) - 1
    x0_last: Tensor | None = None
    h_last = 0.0
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        if sigma_next == 0.0:
            x = x0
            break
        h = math.log(sigma) - math.log(sigma_next)
        final_first_order = i == steps - 1 and lower_order_final and steps < LOWER_ORDER_FINAL_BELOW_STEPS
        if x0_last is None or final_first_order:
            d = x0
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_last
        x = (sigma_next / sigma) * x - math.expm1(-h) * d
        x0_last, h_last = x0, h
    return x
