"""One-step generation (SD-Turbo / ADD): one evaluation at the top sigma, equal to SD-Turbo's diffusers loop."""

from __future__ import annotations

import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler

from pipelines.samplers import SAMPLERS, make_sampler, run, seeded_noise
from pipelines.schedules import sigmas_trailing
from tests.pipelines.samplers.analytic import (
    MU,
    GaussianData,
    S,
    assert_moments,
    count_calls,
    sample_moments,
)
from tests.pipelines.samplers.oracle import (
    LATENT_SHAPE,
    SD15_BETAS,
    EpsModel,
    diffusers_loop,
    sd15_schedule,
    ve_denoiser,
)

DATA = GaussianData(MU, S)


def test_moments_match_gaussian_data_with_ideal_student() -> None:
    sigmas = sigmas_trailing(sd15_schedule(), 1)
    mean, var = sample_moments("onestep", DATA, sigmas, seed=16, denoise=DATA.consistency)
    assert_moments(mean, var, DATA, var_rtol=0.04)


def test_posterior_mean_denoiser_gives_the_posterior_mean() -> None:
    """With E[x0 | x] as the model, one step returns exactly that (variance s^4 / (s^2 + sigma^2))."""
    sigmas = sigmas_trailing(sd15_schedule(), 1)
    x = DATA.initial((20, 1000), float(sigmas[0]), torch.Generator().manual_seed(17))
    out, calls = count_calls(make_sampler("turbo", x, sigmas, lambda: x), DATA.denoise)
    assert calls == 1
    assert torch.equal(out, DATA.denoise(x, sigmas[:1].expand(20)))
    expected_var = DATA.s**4 / (DATA.s**2 + float(sigmas[0]) ** 2)
    assert float(out.var()) == pytest.approx(expected_var, rel=0.05)


def test_matches_sd_turbo_euler_ancestral_one_step() -> None:
    """SD-Turbo runs EulerAncestral, trailing spacing, 1 step: its output is the model's x0 at t = 999."""
    schedule = sd15_schedule()
    scheduler = EulerAncestralDiscreteScheduler(**SD15_BETAS, timestep_spacing="trailing")
    scheduler.set_timesteps(1)
    z = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(18))
    expected = diffusers_loop(
        scheduler, EpsModel(), z * scheduler.init_noise_sigma, torch.Generator()
    )
    sigmas = sigmas_trailing(schedule, 1)
    x = (z.double() * sigmas[0]).float()  # trailing: diffusers' initial latents are z * sigma_max
    out = run(
        make_sampler("onestep", x, sigmas, seeded_noise(x, torch.Generator())),
        ve_denoiser(EpsModel(), schedule),
    )
    assert float((out - expected).abs().max()) <= 1e-4


def test_alias_and_step_limit() -> None:
    assert SAMPLERS["turbo"] is SAMPLERS["onestep"]
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="steps must be <= 1"):
        make_sampler("onestep", x, sigmas_trailing(sd15_schedule(), 2), lambda: x)
