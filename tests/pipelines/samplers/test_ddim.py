"""DDIM: Gaussian moments, agreement with the PF-ODE, and diffusers' DDIMScheduler over whole trajectories."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from pipelines.samplers import make_sampler, run, seeded_noise
from pipelines.schedules import sigmas_karras, sigmas_leading
from tests.pipelines.samplers.analytic import MU, GaussianData, S, assert_moments, sample_moments
from tests.pipelines.samplers.oracle import (
    LATENT_SHAPE,
    SD15_BETAS,
    EpsModel,
    sd15_schedule,
    ve_denoiser,
)

DATA = GaussianData(MU, S)


@pytest.mark.parametrize(("eta", "steps"), [(0.0, 400), (1.0, 1000)])
def test_moments_match_gaussian_data(eta: float, steps: int) -> None:
    # Karras steps; first-order variance error: eta=0 about -0.5% at 400, eta=1 about -1% at 1000
    sigmas = sigmas_karras(steps, 0.002, 80.0)
    mean, var = sample_moments("ddim", DATA, sigmas, seed=1, eta=eta)
    assert_moments(mean, var, DATA)


def test_converges_to_heun_pf_ode() -> None:
    """DDIM (eta=0) is Euler on the PF-ODE, so it approaches Heun's solution at rate 1/steps."""
    rms = []
    for steps in (25, 100, 400, 1000):
        sigmas = sigmas_karras(steps, 0.002, 80.0)
        x = DATA.initial((2000,), float(sigmas[0]), torch.Generator().manual_seed(3))
        ddim = run(make_sampler("ddim", x, sigmas, lambda: torch.zeros(0)), DATA.denoise)
        heun = run(make_sampler("heun", x, sigmas, lambda: torch.zeros(0)), DATA.denoise)
        rms.append(float((ddim - heun).pow(2).mean().sqrt()))
    # measured (RMS over 2000 samples; data std 0.8): 0.10, 0.022, 0.0054, 0.0022:
    # ~4x smaller per 4x steps (first order)
    assert rms[0] > 3 * rms[1] > 9 * rms[2] > 18 * rms[3]
    assert rms[3] < 3e-3


def _diffusers_ddim(steps: int, eta: float, init: torch.Tensor, seed: int) -> torch.Tensor:
    model = EpsModel()
    scheduler = DDIMScheduler(
        **SD15_BETAS, steps_offset=1, set_alpha_to_one=False, clip_sample=False
    )
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    latents = init.clone()
    for t in scheduler.timesteps:
        latents = scheduler.step(
            model(latents, t), t, latents, eta=eta, generator=generator
        ).prev_sample
    return latents


@pytest.mark.parametrize(("steps", "eta"), [(20, 0.0), (50, 0.0), (20, 0.7)])
def test_matches_diffusers_ddim_sd15(steps: int, eta: float) -> None:
    schedule = sd15_schedule()
    init = torch.randn(
        LATENT_SHAPE, generator=torch.Generator().manual_seed(5)
    )  # x_T in the VP view
    expected = _diffusers_ddim(steps, eta, init, seed=9)
    # SD1.5's DDIM stops at alpha_bar_0 (set_alpha_to_one=False): final sigma(t=0), not 0
    sigmas = sigmas_leading(schedule, steps, steps_offset=1, final_sigma=schedule.sigma_min)
    x = (init.double() * (1 + sigmas[0] ** 2).sqrt()).float()  # VP -> VE
    noise = seeded_noise(x, torch.Generator().manual_seed(9))  # the draws diffusers makes, in order
    out = run(make_sampler("ddim", x, sigmas, noise, eta=eta), ve_denoiser(EpsModel(), schedule))
    out_vp = out / (1 + sigmas[-1] ** 2).sqrt()
    assert expected.abs().max() > 0.5  # the comparison is on O(1) latents
    assert float((out_vp - expected).abs().max()) <= 1e-4
