"""Training schedules and sigma schedules against diffusers' schedulers (the test oracle)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LCMScheduler,
)

from pipelines.schedules import (
    FLOW_T_MAX,
    SPACINGS,
    DiscreteSchedule,
    flow_sigma_to_t,
    make_sigmas,
    sigmas_flow,
    sigmas_karras,
    sigmas_lcm,
    sigmas_leading,
    sigmas_linspace,
    sigmas_trailing,
    training_schedule,
)

SD15 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


@pytest.fixture(scope="module")
def sd15() -> DiscreteSchedule:
    return training_schedule("scaled_linear", 0.00085, 0.012, 1000)


@pytest.mark.parametrize(
    ("beta_schedule", "beta_start", "beta_end"),
    [
        ("scaled_linear", 0.00085, 0.012),
        ("linear", 0.0001, 0.02),
        ("squaredcos_cap_v2", 0.0001, 0.02),
    ],
)
def test_training_schedule_matches_diffusers(
    beta_schedule: str, beta_start: float, beta_end: float
) -> None:
    ours = training_schedule(beta_schedule, beta_start, beta_end, 1000).alphas_cumprod
    theirs = DDIMScheduler(
        beta_schedule=beta_schedule, beta_start=beta_start, beta_end=beta_end
    ).alphas_cumprod.double()
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    # diffusers accumulates the product in float32; we keep float64 like the original SD code
    assert torch.allclose(ours, theirs, rtol=2e-5, atol=0)


def test_sd15_sigma_range(sd15: DiscreteSchedule) -> None:
    # published SD1.x values: sigma_min ~= 0.0292, sigma_max ~= 14.6146
    assert sd15.num_train_timesteps == 1000
    assert sd15.sigma_min == pytest.approx(0.029168, abs=1e-5)
    assert sd15.sigma_max == pytest.approx(14.614642, abs=1e-4)
    assert bool((sd15.sigmas[1:] > sd15.sigmas[:-1]).all())


def test_sigma_to_t_is_exact_on_table_and_inverts_t_to_sigma(sd15: DiscreteSchedule) -> None:
    t_table = sd15.sigma_to_t(sd15.sigmas)
    assert torch.equal(t_table, torch.arange(1000, dtype=torch.float64))
    t = torch.linspace(0, 999, 4001, dtype=torch.float64)
    assert (sd15.sigma_to_t(sd15.t_to_sigma(t)) - t).abs().max() < 1e-9
    # interpolation is linear in log sigma: halfway between t=10 and t=11 is the geometric mean
    mid = sd15.t_to_sigma(10.5)
    assert float(mid) == pytest.approx(
        math.sqrt(float(sd15.sigmas[10] * sd15.sigmas[11])), rel=1e-12
    )
    # out-of-range sigmas clamp to the table's ends
    assert float(sd15.sigma_to_t(0.0)) == 0.0 and float(sd15.sigma_to_t(1e6)) == 999.0


def test_discrete_schedule_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="decreasing"):
        DiscreteSchedule(torch.tensor([0.5, 0.6, 0.4], dtype=torch.float64))
    with pytest.raises(ValueError, match="between 0 and 1"):
        DiscreteSchedule(torch.tensor([1.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="beta_schedule"):
        training_schedule("cosine_typo")


@pytest.mark.parametrize("steps", [1, 7, 20, 50, 333])
def test_leading_matches_ddim_and_euler(sd15: DiscreteSchedule, steps: int) -> None:
    ddim = DDIMScheduler(**SD15, steps_offset=1, set_alpha_to_one=False)
    ddim.set_timesteps(steps)
    ours = sigmas_leading(sd15, steps, steps_offset=1, final_sigma=sd15.sigma_min)
    assert ours.shape == (steps + 1,) and ours.dtype == torch.float64
    assert torch.equal(sd15.sigma_to_t(ours[:-1]), ddim.timesteps.double())
    # DDIM with set_alpha_to_one=False stops at alpha_bar_0: sigma(t=0), not 0
    assert float(ours[-1]) == sd15.sigma_min
    euler = EulerDiscreteScheduler(**SD15, steps_offset=1, timestep_spacing="leading")
    euler.set_timesteps(steps)
    euler_ours = sigmas_leading(sd15, steps)
    assert torch.allclose(euler_ours, euler.sigmas.double(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("steps", [1, 3, 4, 25])
def test_trailing_matches_euler(sd15: DiscreteSchedule, steps: int) -> None:
    euler = EulerDiscreteScheduler(**SD15, timestep_spacing="trailing")
    euler.set_timesteps(steps)
    ours = sigmas_trailing(sd15, steps)
    assert torch.equal(sd15.sigma_to_t(ours[:-1]), euler.timesteps.double())
    assert float(sd15.sigma_to_t(ours[0])) == 999.0
    assert torch.allclose(ours, euler.sigmas.double(), rtol=1e-5, atol=0)


def test_linspace_timesteps_match_euler(sd15: DiscreteSchedule) -> None:
    euler = EulerDiscreteScheduler(**SD15, timestep_spacing="linspace")
    euler.set_timesteps(30)
    ours = sigmas_linspace(sd15, 30)
    assert (sd15.sigma_to_t(ours[:-1]) - euler.timesteps.double()).abs().max() < 1e-3
    # diffusers interpolates sigma linearly between table entries, we interpolate log sigma
    assert torch.allclose(ours, euler.sigmas.double(), rtol=1e-4, atol=0)


def test_karras_matches_euler_karras(sd15: DiscreteSchedule) -> None:
    euler = EulerDiscreteScheduler(**SD15, use_karras_sigmas=True)
    euler.set_timesteps(25)
    ours = sigmas_karras(25, sd15.sigma_min, sd15.sigma_max, rho=7.0)
    assert float(ours[0]) == pytest.approx(sd15.sigma_max) and float(ours[-2]) == pytest.approx(
        sd15.sigma_min
    )
    # diffusers' float32 table puts sigma_min 1.3e-5 (relative) above the float64 one
    assert torch.allclose(ours, euler.sigmas.double(), rtol=3e-5, atol=0)


@pytest.mark.parametrize("steps", [1, 2, 4, 7, 8, 50])
def test_lcm_timesteps_match_lcm_scheduler(sd15: DiscreteSchedule, steps: int) -> None:
    lcm = LCMScheduler(**SD15)
    lcm.set_timesteps(steps, original_inference_steps=50)
    ours = sigmas_lcm(sd15, steps, original_steps=50)
    assert torch.equal(sd15.sigma_to_t(ours[:-1]), lcm.timesteps.double())
    assert float(ours[-1]) == 0.0
    with pytest.raises(ValueError, match="steps must be <= original_steps"):
        sigmas_lcm(sd15, 51, original_steps=50)


@pytest.mark.parametrize(("steps", "shift"), [(1, 1.0), (5, 1.0), (28, 3.0)])
def test_flow_matches_flow_match_euler(steps: int, shift: float) -> None:
    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(steps)
    ours_t = flow_sigma_to_t(sigmas_flow(steps, shift))
    # identical except the top, capped below t = 1 (infinite sigma)
    assert float(ours_t[0]) == pytest.approx(FLOW_T_MAX, abs=1e-12)
    assert torch.allclose(ours_t[1:], ref.sigmas.double()[1:], rtol=1e-6, atol=1e-7)


def test_make_sigmas_every_spacing_is_descending_with_steps_plus_one(
    sd15: DiscreteSchedule,
) -> None:
    for spacing in SPACINGS:
        sigmas = make_sigmas(sd15, 10, spacing)
        assert sigmas.shape == (11,) and sigmas.dtype == torch.float64, spacing
        assert bool((sigmas[1:] < sigmas[:-1]).all()), spacing
        assert float(sigmas[-1]) == 0.0, spacing
    assert float(make_sigmas(sd15, 10, "leading", final_sigma=sd15.sigma_min)[-1]) == sd15.sigma_min
    assert torch.equal(make_sigmas(None, 4, "flow", shift=3.0), sigmas_flow(4, 3.0))


def test_make_sigmas_errors_name_the_parameter(sd15: DiscreteSchedule) -> None:
    with pytest.raises(ValueError, match="spacing must be one of"):
        make_sigmas(sd15, 10, "cosine")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        make_sigmas(sd15, 0, "leading")
    with pytest.raises(ValueError, match="final_sigma"):
        make_sigmas(sd15, 10, "leading", final_sigma=float("nan"))
    with pytest.raises(ValueError, match="schedule"):
        make_sigmas(None, 10, "karras")
    with pytest.raises(ValueError, match="shift"):
        make_sigmas(None, 10, "flow", shift=0.0)
    with pytest.raises(ValueError, match="rho"):
        make_sigmas(sd15, 10, "karras", rho=float("inf"))


def test_leading_rejects_steps_that_start_past_the_table(sd15: DiscreteSchedule) -> None:
    assert float(sd15.sigma_to_t(sigmas_leading(sd15, 999)[0])) == 999.0
    with pytest.raises(ValueError, match="steps must be fewer"):
        sigmas_leading(sd15, 1000, steps_offset=1)
    assert float(sd15.sigma_to_t(sigmas_leading(sd15, 1000, steps_offset=0)[0])) == 999.0
