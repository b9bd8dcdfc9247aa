"""One-step generation (Sauer et al. 2023, "Adversarial Diffusion Distillation", section 3; SD-Turbo).

Notation:
    x        the initial sample at the top noise level, x = x0 + sigma_max * eps (VE view)
    x0       the student's output at sigma_max: the image, in one evaluation

The schedule is [sigma_max, sigma_final] (e.g. sigmas_trailing with steps = 1: t = T - 1).
Returns x0 itself when sigma_final = 0: a distilled student maps noise straight to data. For a
schedule that stops at sigma_final > 0 it returns x0 + sigma_final * (x - x0) / sigma_max, the
state at sigma_final that every sampler returns (the wrapper's decoder input rescales it).
"""

from __future__ import annotations

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler


def sample_onestep(x: Tensor, sigmas: Tensor, *, noise: NoiseFn) -> Sampler:
    """ADD / SD-Turbo (Sauer et al. 2023): one evaluation at sigmas[0]; the sample is the model's x0."""
    del noise  # deterministic
    if len(sigmas) != 2:
        raise ValueError(f"sigmas must hold 2 entries (one step) for the one-step sampler, got {len(sigmas)}")
    x0 = yield x, sigmas[0]
    sigma, sigma_final = float(sigmas[0]), float(sigmas[1])
    return x0 if sigma_final == 0.0 else x0 + sigma_final * (x - x0) / sigma
