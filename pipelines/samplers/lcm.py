"""Consistency-model multistep sampling (Song et al. 2023, "Consistency Models", Alg. 1; Luo et al. 2023, LCM Alg. 3).

Notation:
    x        current sample, x = x0 + sigma * eps (variance-exploding view)
    x0       the consistency function's output f(x, sigma): a clean sample, not a mean. The
             model wrapper applies the LCM boundary scalings c_skip, c_out; the sampler does not.
    sigma    noise level now; sigma_next the next one (pipelines.schedules.sigmas_lcm)
    z        fresh standard normal noise

Each step maps x to x0 in one evaluation, then re-noises it to the next level with fresh
noise: x_next = x0 + sigma_next * z (Alg. 1 line 5, in the VE view). The last step returns x0.
"""

from __future__ import annotations

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler


def sample_lcm(x: Tensor, sigmas: Tensor, *, noise: NoiseFn) -> Sampler:
    """Song et al. 2023 Alg. 1 (multistep consistency sampling): x0 = f(x, sigma), then x_next = x0 + sigma_next * z."""
    for i in range(len(sigmas) - 1):
        sigma_next = float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        x = x0 + sigma_next * noise() if sigma_next > 0.0 else x0
    return x
