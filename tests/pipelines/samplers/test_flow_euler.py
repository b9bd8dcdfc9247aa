"""Euler in flow time: Gaussian moments in the flow schedule, and equality with VE Euler on the same sigmas."""

from __future__ import annotations

import torch

from pipelines.samplers import make_sampler, run
from pipelines.schedules import flow_sigma_to_t, sigmas_flow
from tests.pipelines.samplers.analytic import MU, GaussianData, S, assert_moments, sample_moments

DATA = GaussianData(MU, S)


def test_moments_match_gaussian_data() -> None:
    mean, var = sample_moments("flow_euler", DATA, sigmas_flow(400, shift=3.0), seed=11)
    assert_moments(mean, var, DATA)


def test_flow_euler_is_ve_euler_on_the_same_sigmas() -> None:
    """x_t = x / (1 + sigma) makes Euler in flow time and Euler in sigma the same update (DDIM)."""
    sigmas = sigmas_flow(9, shift=3.0)
    x = DATA.initial((64,), float(sigmas[0]), torch.Generator().manual_seed(12)).double()
    a = run(make_sampler("flow_euler", x, sigmas, lambda: x), DATA.denoise)
    b = run(make_sampler("euler", x, sigmas, lambda: x), DATA.denoise)
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_straight_paths_are_exact_in_one_step() -> None:
    """For a point mass the flow is a straight line: one Euler step lands exactly on it."""

    def point_mass(x: torch.Tensor, sigma_rows: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 0.25)

    sigmas = sigmas_flow(1)
    x = torch.randn(8, dtype=torch.float64) * (1 + sigmas[0])  # x_t = eps at t = FLOW_T_MAX
    out = run(make_sampler("flow_euler", x, sigmas, lambda: x), point_mass)
    assert float(flow_sigma_to_t(sigmas[-1])) == 0.0
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-12)
