"""Heun's PF-ODE solver: Gaussian moments, second-order convergence, evaluation count."""

from __future__ import annotations

import torch

from pipelines.samplers import SAMPLERS, make_sampler, run
from pipelines.schedules import sigmas_karras
from tests.pipelines.samplers.analytic import (
    MU,
    GaussianData,
    S,
    assert_moments,
    count_calls,
    sample_moments,
)

DATA = GaussianData(MU, S)


def test_moments_match_gaussian_data() -> None:
    # 50 Karras steps: discretisation error in the variance about +1%
    mean, var = sample_moments("heun", DATA, sigmas_karras(50, 0.002, 80.0), seed=2)
    assert_moments(mean, var, DATA)


def test_second_order_convergence() -> None:
    """Error against a 1000-step solution shrinks much faster than 1/steps."""
    x = DATA.initial((500,), 80.0, torch.Generator().manual_seed(4))
    reference = run(
        make_sampler("heun", x, sigmas_karras(1000, 0.002, 80.0), lambda: x), DATA.denoise
    )
    errors = []
    for steps in (20, 80):
        out = run(
            make_sampler("heun", x, sigmas_karras(steps, 0.002, 80.0), lambda: x), DATA.denoise
        )
        errors.append(float((out - reference).abs().max()))
    assert errors[0] > 8 * errors[1]  # first order would give 4x


def test_two_evaluations_per_step_except_the_last() -> None:
    sigmas = sigmas_karras(10, 0.002, 80.0)
    x = DATA.initial((3,), 80.0, torch.Generator().manual_seed(0))
    _, calls = count_calls(make_sampler("heun", x, sigmas, lambda: x), DATA.denoise)
    assert calls == 2 * 10 - 1
    assert SAMPLERS["heun"].evaluations_per_step == 2
