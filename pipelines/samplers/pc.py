"""Predictor-corrector sampling (Song et al. 2021, "Score-Based Generative Modeling through SDEs", Alg. 1, 2 and 4).

Notation (variance-exploding view; the paper's VE-SDE algorithms, where alpha_i = 1):
    x          current sample, x = x0 + sigma * eps
    x0         the denoiser's estimate E[x0 | x]
    score      grad_x log p_sigma(x) = (x0 - x) / sigma^2 (Tweedie's formula)
    r          the corrector's signal-to-noise ratio `snr`
    step       the Langevin step size 2 (r ||z|| / ||score||)^2, per image (Alg. 4, line 4)
    z          fresh standard normal noise

Each step runs one predictor step from sigma to sigma_next (any one-step sampler, driven as a
generator over [sigma, sigma_next]), then `corrector_steps` Langevin steps at sigma_next:
x += step * score + sqrt(2 step) z. No corrector runs at sigma = 0, where the score is
undefined. Norms are per image (row), never over the batch, so a request's result does not
depend on the rows it shares a forward pass with. (The paper's Alg. 5 is the VP form of the
same corrector, with the alpha_i factor that the VE view removes.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler
from pipelines.samplers.ddpm import sample_ddpm

Predictor = Callable[..., Sampler]  # sample_<name>(x, sigmas, *, noise) of a one-step-capable sampler


def _row_norm(v: Tensor) -> Tensor:
    """(N, ...) -> (N, 1, ..., 1): the L2 norm of each row, shaped to broadcast against v."""
    n = v.reshape(v.shape[0], -1).norm(dim=1)  # (N,)
    return n.reshape((v.shape[0],) + (1,) * (v.dim() - 1))


def sample_pc(
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: NoiseFn,
    predictor: Predictor = sample_ddpm,
    snr: float = 0.16,
    corrector_steps: int = 1,
) -> Sampler:
    """Song et al. 2021 Alg. 1/2: predictor step, then Langevin corrector with step 2 (snr ||z|| / ||score||)^2 (Alg. 4)."""
    for i in range(len(sigmas) - 1):
        x = yield from predictor(x, sigmas[i : i + 2], noise=noise)
        sigma_next = float(sigmas[i + 1])
        if sigma_next == 0.0:
            continue
        for _ in range(corrector_steps):
            x0 = yield x, sigmas[i + 1]
            score = (x0 - x) / sigma_next**2
            z = noise()
            # a zero score (x already at the mode) gives step 0 rather than inf
            step = 2 * (snr * _row_norm(z) / _row_norm(score).clamp_min(torch.finfo(score.dtype).tiny)) ** 2
            x = x + step * score + (2 * step).sqrt() * z
    return x
