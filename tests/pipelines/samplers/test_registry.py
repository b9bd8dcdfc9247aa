"""The sampler registry: names, specs, bad input errors naming the parameter, randomness only via noise()."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.samplers import (
    SAMPLERS,
    make_sampler,
    run,
    sampler_spec,
    seeded_noise,
    validate_sigmas,
    validate_steps,
)
from pipelines.schedules import SPACINGS, make_sigmas
from tests.pipelines.samplers.analytic import MU, GaussianData, S
from tests.pipelines.samplers.oracle import sd15_schedule

DATA = GaussianData(MU, S)
PUBLIC = {
    "ddim",
    "ddpm",
    "heun",
    "dpmpp_2m",
    "pc",
    "euler",
    "euler_ancestral",
    "flow_euler",
    "lcm",
    "onestep",
    "turbo",
}


def _sigmas(name: str, steps: int = 4) -> torch.Tensor:
    spec = sampler_spec(name)
    return make_sigmas(sd15_schedule(), min(steps, spec.max_steps), spec.default_spacing)


def test_public_names_and_specs() -> None:
    assert set(SAMPLERS) == PUBLIC
    for name, spec in SAMPLERS.items():
        assert spec.default_spacing in SPACINGS, name
        assert 1 <= spec.min_steps <= spec.max_steps, name
        assert spec.evaluations_per_step >= 1 and spec.description, name
        doc = (spec.fn.__doc__ or "").strip().splitlines()[0]
        assert "et al." in doc or "Sauer" in doc, f"{name}: docstring must cite its source: {doc}"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_randomness_only_through_noise(name: str) -> None:
    """Same seed, same result; the global RNG is never touched; stochastic flags are honest."""
    sigmas = _sigmas(name)
    draws = []

    def one_run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        x = DATA.initial((3, 8), float(sigmas[0]), g)
        base = seeded_noise(x, g)

        def noise() -> torch.Tensor:
            draws.append(1)
            return base()

        return run(make_sampler(name, x, sigmas, noise), DATA.denoise)

    state = torch.get_rng_state()
    a, b = one_run(5), one_run(5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert bool(draws) == SAMPLERS[name].stochastic


def test_unknown_sampler() -> None:
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_sampler("dpm_fast", x, _sigmas("ddim"), lambda: x)
    with pytest.raises(ValueError, match="sampler must be one of"):
        validate_steps("nope", 10)


@pytest.mark.parametrize(
    ("name", "steps", "message"),
    [
        ("ddim", 0, "steps must be >= 1"),
        ("ddim", -3, "steps must be >= 1"),
        ("ddim", 2.5, "steps must be an integer"),
        ("ddim", True, "steps must be an integer"),
        ("ddim", 1001, "steps must be <= 1000"),
        ("onestep", 2, "steps must be <= 1"),
        ("lcm", 51, "steps must be <= 50"),
    ],
)
def test_bad_steps(name: str, steps: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_steps(name, steps)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("ddim", {"eta": math.nan}, "eta must be a finite number in"),
        ("ddim", {"eta": 1.5}, "eta must be a finite number in"),
        ("euler_ancestral", {"eta": -0.1}, "eta must be a finite number in"),
        ("heun", {"eta": 0.5}, "eta is not an option of sampler 'heun'"),
        ("ddim", {"snr": 0.1}, "snr is not an option of sampler 'ddim'"),
        ("pc", {"snr": math.nan}, "snr must be a finite number > 0"),
        ("pc", {"snr": 0.0}, "snr must be a finite number > 0"),
        ("pc", {"corrector_steps": -1}, "corrector_steps must be an integer"),
        ("pc", {"corrector_steps": 1.5}, "corrector_steps must be an integer"),
        ("pc", {"predictor": "lcm"}, "predictor must be one of"),
        ("dpmpp_2m", {"lower_order_final": "yes"}, "lower_order_final must be a bool"),
    ],
)
def test_bad_options_name_the_parameter(
    name: str, options: dict[str, object], message: str
) -> None:
    x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=message):
        make_sampler(name, x, _sigmas(name), lambda: x, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        (torch.tensor([1.0], dtype=torch.float64), "sigmas must be a 1-d tensor of >= 2 entries"),
        (torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), "strictly descending"),
        (torch.tensor([math.nan, 0.0], dtype=torch.float64), "sigmas must be finite"),
        (torch.tensor([math.inf, 0.0], dtype=torch.float64), "sigmas must be finite"),
        (torch.tensor([1.0, -0.5], dtype=torch.float64), "end at a value >= 0"),
    ],
)
def test_bad_sigmas(sigmas: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_sigmas(sigmas)
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match=message):
        make_sampler("euler", x, sigmas, lambda: x)
