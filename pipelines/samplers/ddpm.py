"""Ancestral DDPM as the reverse-time SDE solved by Euler-Maruyama (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 6).

Notation (variance-exploding SDE dx = sqrt(d[sigma^2]/dt) dw; Song et al. 2021, eq. 9):
    x        current sample, x = x0 + sigma * eps
    x0       the denoiser's estimate E[x0 | x]
    score    grad_x log p_sigma(x) = (x0 - x) / sigma^2 (Tweedie's formula)
    sigma    noise level now; sigma_next the next one
    dvar     sigma^2 - sigma_next^2, the variance the forward process adds between the two
    z        fresh standard normal noise

One reverse step: x_next = x + dvar * score + sqrt(dvar) * z (Euler-Maruyama on eq. 6 with
f = 0 and g^2 dt = dvar). Its mean equals DDPM's posterior mean (Ho et al. 2020, eq. 7); its
variance, dvar, is the SDE's rather than the posterior's sigma_next^2 dvar / sigma^2 (that is
DDIM with eta = 1); both converge to the data distribution as steps grow. The final step to
sigma = 0 returns the mean without noise, as Song et al.'s samplers do ("denoise" at the end).
"""

from __future__ import annotations

from torch import Tensor

from pipelines.samplers import NoiseFn, Sampler


def sample_ddpm(x: Tensor, sigmas: Tensor, *, noise: NoiseFn) -> Sampler:
    """Euler-Maruyama on the reverse VE SDE (Song et al. 2021, eq. 6): x += dvar * score + sqrt(dvar) * z."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = yield x, sigmas[i]
        dvar = sigma**2 - sigma_next**2
        score = (x0 - x) / sigma**2
        x = x + dvar * score
        if sigma_next > 0.0:
            x = x + dvar**0.5 * noise()
    return x
