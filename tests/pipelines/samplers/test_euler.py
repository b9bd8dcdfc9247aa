"""Euler and Euler ancestral: Gaussian moments and diffusers' Euler schedulers over whole trajectories."""

from __future__ import annotations

import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

from pipelines.samplers import make_sampler, run, seeded_noise
from pipelines.schedules import sigmas_karras, sigmas_leading
from tests.pipelines.samplers.analytic import MU, GaussianData, S, assert_moments, sample_moments
from tests.pipelines.samplers.oracle import (
    LATENT_SHAPE,
    SD15_BETAS,
    EpsModel,
    diffusers_loop,
    sd15_schedule,
    ve_denoiser,
)

DATA = GaussianData(MU, S)


def test_euler_moments_match_gaussian_data() -> None:
    mean, var = sample_moments("euler", DATA, sigmas_karras(400, 0.002, 80.0), seed=6)
    assert_moments(mean, var, DATA)


def test_euler_ancestral_moments_match_gaussian_data() -> None:
    # ancestral sampling under-disperses by O(1/steps): about -1% at 1000 Karras steps
    mean, var = sample_moments("euler_ancestral", DATA, sigmas_karras(1000, 0.002, 80.0), seed=7)
    assert_moments(mean, var, DATA)


def test_euler_equals_ddim_eta_zero() -> None:
    sigmas = sigmas_karras(12, 0.002, 80.0)
    x = DATA.initial((100,), 80.0, torch.Generator().manual_seed(0)).double()
    a = run(make_sampler("euler", x, sigmas, lambda: x), DATA.denoise)
    b = run(make_sampler("ddim", x, sigmas, lambda: x, eta=0.0), DATA.denoise)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "scheduler_cls"),
    [("euler", EulerDiscreteScheduler), ("euler_ancestral", EulerAncestralDiscreteScheduler)],
)
def test_matches_diffusers_euler_sd15(name: str, scheduler_cls: type) -> None:
    schedule = sd15_schedule()
    scheduler = scheduler_cls(**SD15_BETAS, steps_offset=1, timestep_spacing="leading")
    scheduler.set_timesteps(25)
    z = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(7))
    init = z * scheduler.init_noise_sigma  # diffusers' Euler latents are already in the VE view
    # the ancestral noise: diffusers draws from this generator each step, our noise() replays it
    expected = diffusers_loop(
        scheduler, EpsModel(), init.clone(), torch.Generator().manual_seed(11)
    )
    sigmas = sigmas_leading(schedule, 25, steps_offset=1)
    x = (z.double() * (1 + sigmas[0] ** 2).sqrt()).float()
    noise = seeded_noise(x, torch.Generator().manual_seed(11))
    out = run(make_sampler(name, x, sigmas, noise), ve_denoiser(EpsModel(), schedule))
    assert expected.abs().max() > 0.5
    assert float((out - expected).abs().max()) <= 1e-4
