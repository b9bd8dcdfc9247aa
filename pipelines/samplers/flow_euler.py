"""Euler in flow time for rectified-flow / flow-matching models (Liu et al. 2023; Lipman et al. 2023; Esser et al. 2024, eq. 1-3).

Notation:
    t        flow time in [0, 1): x_t = (1 - t) x0 + t eps (t = 1 is pure noise)
    v        the velocity dx_t/dt = eps - x0, here recovered from x0 as (x_t - x0) / t
    x        the sampler's state in the variance-exploding view, x = x_t / (1 - t) = x0 + sigma eps,
             with sigma = t / (1 - t) (pipelines.schedules.sigmas_flow)
    x0       the denoiser's estimate E[x0 | x]

The step x_t_next = x_t + (t_next - t) v is taken in flow time, where it is exact for straight
paths; the state stays in the VE view so the denoiser contract is the same for every model.
"""

from __future__ import annotations

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler


def sample_flow_euler(x: Tensor, sigmas: Tensor, *, noise: NoiseFn) -> Sampler:
    """Euler on the flow ODE dx_t/dt = v (Esser et al. 2024, eq. 2), x_t = x / (1 + sigma), t = sigma / (1 + sigma)."""
    del noise  # deterministic
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        t, t_next = sigma / (1 + sigma), sigma_next / (1 + sigma_next)
        x0 = yield x, sigmas[i]
        x_t = x * (1 - t)
        v = (x_t - x0) / t
        x_t = x_t + (t_next - t) * v
        x = x_t / (1 - t_next)
    return x
