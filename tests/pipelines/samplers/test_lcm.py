"""LCM / consistency multistep: exact moments with an ideal consistency function, and diffusers' LCMScheduler."""

from __future__ import annotations

import pytest
import torch
from diffusers import LCMScheduler

from pipelines.samplers import make_sampler, run, seeded_noise
from pipelines.schedules import sigmas_lcm
from tests.pipelines.samplers.analytic import MU, GaussianData, S, assert_moments, sample_moments
from tests.pipelines.samplers.oracle import (
    LATENT_SHAPE,
    SD15_BETAS,
    EpsModel,
    lcm_denoiser,
    sd15_schedule,
)

DATA = GaussianData(MU, S)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_moments_match_gaussian_data_with_ideal_consistency_function(steps: int) -> None:
    """The exact PF-ODE flow map is what a perfect LCM student computes; sampling is then exact at any step count."""
    sigmas = sigmas_lcm(sd15_schedule(), steps)
    mean, var = sample_moments("lcm", DATA, sigmas, seed=13, denoise=DATA.consistency)
    assert_moments(mean, var, DATA, var_rtol=0.04)  # no discretisation error: Monte Carlo only


@pytest.mark.parametrize("steps", [1, 4, 6])
def test_matches_diffusers_lcm_scheduler(steps: int) -> None:
    schedule = sd15_schedule()
    scheduler = LCMScheduler(**SD15_BETAS, timestep_scaling=10.0)
    scheduler.set_timesteps(steps, original_inference_steps=50)
    model = EpsModel()
    init = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(14))  # VP x_T
    generator = torch.Generator().manual_seed(15)
    latents = init.clone()
    for t in scheduler.timesteps:
        latents, denoised = scheduler.step(
            model(latents, t), t, latents, generator=generator, return_dict=False
        )
    sigmas = sigmas_lcm(schedule, steps, original_steps=50)
    x = (init.double() * (1 + sigmas[0] ** 2).sqrt()).float()
    noise = seeded_noise(x, torch.Generator().manual_seed(15))
    out = run(make_sampler("lcm", x, sigmas, noise), lcm_denoiser(model, schedule))
    assert denoised.abs().max() > 0.5
    assert float((out - denoised).abs().max()) <= 1e-4
