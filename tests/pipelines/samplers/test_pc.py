"""Predictor-corrector (Song et al. 2021): Gaussian moments, convergence, any predictor, evaluation count."""

from __future__ import annotations

import pytest
import torch

from pipelines.samplers import PC_PREDICTORS, make_sampler
from pipelines.schedules import sigmas_leading
from tests.pipelines.samplers.analytic import (
    MU,
    GaussianData,
    S,
    assert_moments,
    count_calls,
    sample_moments,
)
from tests.pipelines.samplers.oracle import sd15_schedule

DATA = GaussianData(MU, S)


def test_moments_match_gaussian_data_at_default_snr() -> None:
    # Discretised Langevin at step 2 r^2 sigma_total^2 is stationary at variance / (1 - r^2):
    # +2.6% at the default snr r = 0.16 (1000 dimensions per row), inside the 5% tolerance.
    mean, var = sample_moments("pc", DATA, sigmas_leading(sd15_schedule(), 400), seed=8)
    assert_moments(mean, var, DATA)


@pytest.mark.parametrize("predictor", [p for p in PC_PREDICTORS if p != "ddpm"])
def test_any_predictor(predictor: str) -> None:
    mean, var = sample_moments(
        "pc", DATA, sigmas_leading(sd15_schedule(), 400), seed=9, predictor=predictor, snr=0.05
    )
    assert_moments(mean, var, DATA)


def test_converges_in_distribution_as_steps_grow() -> None:
    """With a small snr the corrector's bias vanishes, and the error falls with the step count."""
    errors = []
    for steps in (10, 50, 400):
        _, var = sample_moments(
            "pc", DATA, sigmas_leading(sd15_schedule(), steps), seed=10, snr=0.02
        )
        errors.append(abs(var / DATA.s**2 - 1))
    # measured: 0.50, 0.067, 0.008 (20k samples)
    assert errors[0] > 2 * errors[1] > 4 * errors[2]
    assert errors[2] < 0.02


def test_corrector_runs_at_every_level_above_zero() -> None:
    sigmas = sigmas_leading(sd15_schedule(), 10)
    x = DATA.initial((2, 16), float(sigmas[0]), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)

    def noise() -> torch.Tensor:
        return torch.randn(x.shape, generator=g, dtype=x.dtype)

    _, calls = count_calls(make_sampler("pc", x, sigmas, noise, corrector_steps=3), DATA.denoise)
    assert calls == 10 + 3 * 9  # one predictor call per step, 3 corrector calls at 9 levels > 0
    _, calls = count_calls(make_sampler("pc", x, sigmas, noise, corrector_steps=0), DATA.denoise)
    assert calls == 10
