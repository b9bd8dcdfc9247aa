"""Training-side schedule and LCM constants against diffusers, and the eval's metrics."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, LCMScheduler

from server.commands.eval import (
    FULL_GRID,
    FULL_GUIDANCE,
    QUICK_GUIDANCE,
    frechet_distance,
    plan,
    spread,
)
from training.diffusion import SCHEDULER_CONFIG, alphas_cumprod, leading_timesteps
from training.distill_lcm import LCM_SCHEDULER_CONFIG, boundary, lcm_timesteps


def test_schedule_equals_ddim_scheduler() -> None:
    scheduler = DDIMScheduler.from_config({k: v for k, v in SCHEDULER_CONFIG.items() if not k.startswith("_")})
    assert torch.allclose(alphas_cumprod().float(), scheduler.alphas_cumprod, atol=1e-6)
    for steps in (10, 25, 50):
        scheduler.set_timesteps(steps)
        assert leading_timesteps(steps) == scheduler.timesteps.tolist()


def test_lcm_timesteps_and_boundary_equal_lcm_scheduler() -> None:
    scheduler = LCMScheduler.from_config({k: v for k, v in LCM_SCHEDULER_CONFIG.items() if not k.startswith("_")})
    for steps in (1, 2, 4, 8):
        scheduler.set_timesteps(steps)
        assert lcm_timesteps(steps) == scheduler.timesteps.tolist()
    t = torch.tensor([0, 19, 259, 999])
    c_skip, c_out = boundary(t)
    for i, step in enumerate(t.tolist()):
        want_skip, want_out = scheduler.get_scalings_for_boundary_condition_discrete(step)
        assert abs(float(c_skip[i]) - want_skip) < 1e-6 and abs(float(c_out[i]) - want_out) < 1e-6


def test_frechet_distance_exact_cases() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 8, generator=g)
    assert abs(frechet_distance(a, a)) < 1e-6
    # shifting every feature by 1 adds ||1||^2 = 8; scaling by 2 gives ||mu||^2 + tr(S) (1 + 4 - 2 * 2)
    assert abs(frechet_distance(a, a + 1.0) - 8.0) < 1e-6
    mu = a.double().mean(0)
    want = float((mu**2).sum() + torch.trace(torch.cov(a.T.double())))
    assert abs(frechet_distance(a, 2 * a) - want) < 1e-6
    assert abs(spread(2 * a, a) - 4.0) < 1e-9


def test_eval_plan_covers_the_grid_with_ddim25_first() -> None:
    configs = plan(quick=False)
    assert [(c.sampler, c.steps) for c in configs[: len(FULL_GUIDANCE)]] == [("ddim", 25)] * len(FULL_GUIDANCE)
    assert all(c.splits == ("seen", "heldout") for c in configs)  # every cell on held-out captions too
    assert all(c.splits == ("seen",) for c in plan(quick=True)[len(QUICK_GUIDANCE):])
    covered = {(c.sampler, c.steps, c.guidance) for c in configs}
    assert covered == {(s, k, w) for s, k in FULL_GRID for w in FULL_GUIDANCE}


def test_loss_curve_smoothing_keeps_a_short_run() -> None:
    from training.checkpoint import smoothed

    short = [(10 * i, float(i % 3)) for i in range(43)]  # a 430-step run logged every 10 steps
    steps, values = smoothed(short)
    assert len(steps) == len(values) == 43 - 8 + 1  # a window of 8 logs, not one point
    assert torch.allclose(values[0], torch.tensor(sum(i % 3 for i in range(8)) / 8, dtype=torch.float64))
    long = [(i, 1.0) for i in range(1000)]
    steps, values = smoothed(long)
    assert len(steps) == 1000 - 50 + 1 and steps[0] == 49 and torch.all(values == 1.0)
    assert len(smoothed([(0, 2.0)])[0]) == 1  # a single log plots as itself


def test_deadline_ends_when_its_stop_file_appears(tmp_path) -> None:
    from training.checkpoint import Deadline

    stop = tmp_path / "STOP"
    deadline = Deadline(3600.0, stop)
    assert deadline.left() > 3500 and not deadline.passed()
    stop.touch()
    assert deadline.passed() and deadline.left() <= 0
    stop.unlink()  # the budget stays ended once seen
    assert deadline.passed()
    assert Deadline(3600.0).left() > 3500
