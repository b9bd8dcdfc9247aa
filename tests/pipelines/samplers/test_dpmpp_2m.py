"""DPM-Solver++(2M): Gaussian moments and diffusers' DPMSolverMultistepScheduler over whole trajectories."""

from __future__ import annotations

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from pipelines.samplers import make_sampler, run
from pipelines.schedules import sigmas_karras, sigmas_trailing
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


def test_moments_match_gaussian_data() -> None:
    mean, var = sample_moments("dpmpp_2m", DATA, sigmas_karras(50, 0.002, 80.0), seed=5)
    assert_moments(mean, var, DATA)


@pytest.mark.parametrize(
    ("steps", "final_sigmas_type"),
    [(20, "zero"), (8, "zero"), (10, "sigma_min"), (20, "sigma_min")],
)
def test_matches_diffusers_dpmsolver_pp_2m(steps: int, final_sigmas_type: str) -> None:
    """dpmsolver++, order 2, midpoint, lower_order_final: both the < 15-step first-order final step and not."""
    schedule = sd15_schedule()
    scheduler = DPMSolverMultistepScheduler(
        **SD15_BETAS,
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
        final_sigmas_type=final_sigmas_type,
        lower_order_final=True,
    )
    scheduler.set_timesteps(steps)
    init = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(6))  # VP x_T
    expected = diffusers_loop(scheduler, EpsModel(), init.clone())
    final_sigma = schedule.sigma_min if final_sigmas_type == "sigma_min" else 0.0
    sigmas = sigmas_trailing(schedule, steps, final_sigma=final_sigma)
    x = (init.double() * (1 + sigmas[0] ** 2).sqrt()).float()
    out = run(make_sampler("dpmpp_2m", x, sigmas, lambda: x), ve_denoiser(EpsModel(), schedule))
    out_vp = out / (1 + sigmas[-1] ** 2).sqrt()
    assert expected.abs().max() > 0.5
    assert float((out_vp - expected).abs().max()) <= 1e-4


def test_lower_order_final_changes_only_short_runs_ending_above_zero() -> None:
    schedule = sd15_schedule()
    x = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(1)) * 14.6
    denoise = ve_denoiser(EpsModel(), schedule)
    short = sigmas_trailing(schedule, 8, final_sigma=schedule.sigma_min)
    a = run(make_sampler("dpmpp_2m", x, short, lambda: x, lower_order_final=True), denoise)
    b = run(make_sampler("dpmpp_2m", x, short, lambda: x, lower_order_final=False), denoise)
    assert float((a - b).abs().max()) > 1e-4
    long = sigmas_trailing(schedule, 16, final_sigma=schedule.sigma_min)
    a = run(make_sampler("dpmpp_2m", x, long, lambda: x, lower_order_final=True), denoise)
    b = run(make_sampler("dpmpp_2m", x, long, lambda: x, lower_order_final=False), denoise)
    assert torch.equal(a, b)
