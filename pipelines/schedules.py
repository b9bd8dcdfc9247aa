"""Training noise schedules and the sigma schedules samplers walk, in the variance-exploding view.

Notation (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", section 2 and Table 1; Ho et al. 2020 for the discrete schedule):

    t                 discrete training timestep, 0 .. T-1 (T = num_train_timesteps)
    beta_t            per-step noise variance of the training process
    alpha_bar_t       alphas_cumprod[t] = prod_{s<=t} (1 - beta_s)
    x_vp              = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps   (what VP models see)
    x                 = x_vp / sqrt(alpha_bar_t) = x0 + sigma * eps           (what samplers hold)
    sigma(t)          = sqrt((1 - alpha_bar_t) / alpha_bar_t)

A sigma schedule is a DESCENDING float64 tensor of `steps + 1` entries: the sampler evaluates
the model at the first `steps` of them, and the last entry is where sampling stops (0, or a
small positive sigma for schedules that stop short of clean data - the model wrapper then
decodes x / sqrt(1 + sigma_final^2)). Every spacing function below is a plain function of its
arguments, so any sampler runs with any schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

SPACINGS = ("leading", "trailing", "linspace", "karras", "lcm", "flow")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

# Flow matching puts pure noise at t = 1, where sigma = t / (1 - t) is infinite. The VE view
# needs a finite start, so the flow schedule starts at t <= FLOW_T_MAX instead: sigma <= 9999.
# The model sees x_t = x / (1 + sigma) = (1 - t) * x0 + t * eps, which at t = 1 - 1e-4 differs
# from pure noise by 1e-4 of the data, well below what a 1000-step-trained model resolves.
FLOW_T_MAX = 1.0 - 1e-4


@dataclass(frozen=True)
class DiscreteSchedule:
    """A model's discrete training schedule (Ho et al. 2020, eq. 4) and its sigma <-> t map."""

    alphas_cumprod: Tensor  # (T,) float64, strictly decreasing in t, each in (0, 1)

    def __post_init__(self) -> None:
        a = self.alphas_cumprod
        if a.dim() != 1 or a.numel() < 2:
            raise ValueError(
                f"alphas_cumprod must be a 1-d tensor of >= 2 entries, got shape {tuple(a.shape)}"
            )
        object.__setattr__(self, "alphas_cumprod", a.detach().to(dtype=torch.float64, device="cpu"))
        a = self.alphas_cumprod
        if not bool(((a > 0) & (a < 1)).all()):
            raise ValueError("alphas_cumprod must lie strictly between 0 and 1")
        if not bool((a[1:] < a[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of training timesteps."""
        return int(self.alphas_cumprod.numel())

    @property
    def sigmas(self) -> Tensor:
        """sigma(t) = sqrt((1 - alpha_bar_t) / alpha_bar_t) for t = 0 .. T-1, ascending, float64."""
        a = self.alphas_cumprod
        return ((1.0 - a) / a).sqrt()

    @property
    def sigma_min(self) -> float:
        """sigma at t = 0."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """sigma at t = T - 1."""
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: Tensor | float) -> Tensor:
        """Continuous timestep of `sigma` by linear interpolation in log sigma (exact on table values)."""
        log_sigmas = self.sigmas.log()  # (T,)
        s = torch.as_tensor(sigma, dtype=torch.float64)
        log_s = s.clamp(self.sigma_min, self.sigma_max).log()
        # index of the table entry at or below log_s; the last interval is [T-2, T-1]
        low = (torch.searchsorted(log_sigmas, log_s.reshape(-1), right=True) - 1).clamp(
            0, len(log_sigmas) - 2
        )
        low = low.reshape(s.shape)
        lo, hi = log_sigmas[low], log_sigmas[low + 1]
        w = (log_s - lo) / (hi - lo)
        return low.to(torch.float64) + w

    def t_to_sigma(self, t: Tensor | float) -> Tensor:
        """sigma at a continuous timestep, interpolating log sigma linearly (inverse of `sigma_to_t`)."""
        log_sigmas = self.sigmas.log()
        tt = torch.as_tensor(t, dtype=torch.float64).clamp(0, self.num_train_timesteps - 1)
        low = tt.floor().long().clamp(max=self.num_train_timesteps - 2)
        w = tt - low.to(torch.float64)
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]).exp()


def training_schedule(
    beta_schedule: str,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = 1000,
) -> DiscreteSchedule:
    """The DDPM training schedule alpha_bar_t = prod (1 - beta_s) (Ho et al. 2020; cosine: Nichol & Dhariwal 2021, eq. 17).

    Computed in float64, as the original Stable Diffusion code does (diffusers uses float32;
    the two agree to ~1e-6 relative).
    """
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
    T = num_train_timesteps
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    elif beta_schedule == "squaredcos_cap_v2":

        def alpha_bar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        # beta capped at 0.999 so alpha_bar never reaches 0 (Nichol & Dhariwal 2021, section 3.2)
        betas = torch.tensor(
            [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)],
            dtype=torch.float64,
        )
    else:
        raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
    return DiscreteSchedule(torch.cumprod(1.0 - betas, dim=0))


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def _check_final_sigma(final_sigma: float, smallest: float) -> None:
    if not (math.isfinite(final_sigma) and 0.0 <= final_sigma < smallest):
        raise ValueError(
            f"final_sigma must be >= 0 and below the schedule's last sigma {smallest}, got {final_sigma}"
        )


def _from_timesteps(schedule: DiscreteSchedule, timesteps: Tensor, final_sigma: float) -> Tensor:
    """Descending sigmas at the given (descending) timesteps, then `final_sigma`."""
    sigmas = schedule.t_to_sigma(timesteps.to(torch.float64))
    _check_final_sigma(final_sigma, float(sigmas[-1]))
    return torch.cat([sigmas, sigmas.new_tensor([final_sigma])])


def sigmas_leading(
    schedule: DiscreteSchedule, steps: int, *, steps_offset: int = 1, final_sigma: float = 0.0
) -> Tensor:
    """ "Leading" spacing (Lin et al. 2023, Table 2; diffusers DDIM/Euler): t_i = i * (T // steps) + offset, descending.

    Stable Diffusion's own schedule. `final_sigma = schedule.sigma_min` reproduces DDIM with
    set_alpha_to_one=False (it stops at alpha_bar_0, sigma ~= 0.029 for SD), 0.0 reproduces Euler.
    """
    _check_steps(steps)
    T = schedule.num_train_timesteps
    if steps > T:
        raise ValueError(f"steps must be <= num_train_timesteps ({T}), got {steps}")
    step_ratio = T // steps
    timesteps = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * step_ratio + steps_offset
    if float(timesteps[0]) > T - 1:
        raise ValueError(
            f"steps must be fewer: {steps} leading steps with steps_offset {steps_offset} start past t = {T - 1}"
        )
    return _from_timesteps(schedule, timesteps, final_sigma)


def sigmas_trailing(schedule: DiscreteSchedule, steps: int, *, final_sigma: float = 0.0) -> Tensor:
    """ "Trailing" spacing (Lin et al. 2023, Table 2): t_i = round(T - i * T / steps) - 1, starting at T - 1.

    The schedule of SD-Turbo / SDXL-Turbo and of zero-terminal-SNR models. (diffusers' DDIM
    steps to t - T // steps instead of the next listed timestep when T / steps is not an
    integer; this follows the list, as diffusers' Euler does.)
    """
    _check_steps(steps)
    T = schedule.num_train_timesteps
    if steps > T:
        raise ValueError(f"steps must be <= num_train_timesteps ({T}), got {steps}")
    # round half to even, like numpy's round
    timesteps = torch.round(T - torch.arange(steps, dtype=torch.float64) * (T / steps)) - 1
    return _from_timesteps(schedule, timesteps, final_sigma)


def sigmas_linspace(schedule: DiscreteSchedule, steps: int, *, final_sigma: float = 0.0) -> Tensor:
    """ "Linspace" spacing (Lin et al. 2023, Table 2): continuous t evenly from T - 1 down to 0.

    Fractional timesteps map to sigma by log-sigma interpolation (the inverse of
    `sigma_to_t`; k-diffusion's choice). diffusers' Euler interpolates sigma linearly instead,
    which differs by < 0.1% between table entries.
    """
    _check_steps(steps)
    T = schedule.num_train_timesteps
    timesteps = (
        torch.linspace(T - 1, 0, steps, dtype=torch.float64)
        if steps > 1
        else torch.tensor([T - 1.0])
    )
    return _from_timesteps(schedule, timesteps, final_sigma)


def sigmas_karras(
    steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, final_sigma: float = 0.0
) -> Tensor:
    """Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho."""
    _check_steps(steps)
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(
            f"sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
        )
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho}")
    ramp = (
        torch.linspace(0, 1, steps, dtype=torch.float64)
        if steps > 1
        else torch.zeros(1, dtype=torch.float64)
    )
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    _check_final_sigma(final_sigma, float(sigmas[-1]))
    return torch.cat([sigmas, sigmas.new_tensor([final_sigma])])


def sigmas_lcm(
    schedule: DiscreteSchedule, steps: int, original_steps: int = 50, *, final_sigma: float = 0.0
) -> Tensor:
    """Latent Consistency Model timesteps (Luo et al. 2023, section 4.2 "skipping-step"), as diffusers' LCMScheduler picks them.

    The distillation grid is t_j = j * (T // original_steps) - 1 for j = 1 .. original_steps;
    inference takes `steps` of them at evenly spaced (floored) indices from the top.
    """
    _check_steps(steps)
    T = schedule.num_train_timesteps
    if not (isinstance(original_steps, int) and 1 <= original_steps <= T):
        raise ValueError(f"original_steps must be an integer in [1, {T}], got {original_steps!r}")
    if steps > original_steps:
        raise ValueError(
            f"steps must be <= original_steps ({original_steps}) for the lcm schedule, got {steps}"
        )
    k = T // original_steps
    grid = (
        torch.arange(original_steps, 0, -1, dtype=torch.float64) * k - 1
    )  # descending distillation grid
    indices = torch.floor(
        torch.arange(steps, dtype=torch.float64) * (original_steps / steps)
    ).long()
    return _from_timesteps(schedule, grid[indices], final_sigma)


def sigmas_flow(steps: int, shift: float = 1.0, *, num_train_timesteps: int = 1000) -> Tensor:
    """Rectified-flow schedule (Esser et al. 2024, eq. 23 time shift) in the VE view sigma = t / (1 - t).

    As diffusers' FlowMatchEulerDiscreteScheduler (what SD3-style checkpoints are served with):
    t runs evenly from 1 down to the shifted training minimum shift(1/T), then every entry is
    shifted, shift(t) = shift t / (1 + (shift - 1) t). The top is capped at FLOW_T_MAX (t = 1 is
    pure noise, infinite sigma) and the schedule ends at sigma 0.
    """
    _check_steps(steps)
    if not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a positive number, got {shift}")
    T = num_train_timesteps

    def shifted(t: Tensor) -> Tensor:
        return shift * t / (1 + (shift - 1) * t)

    t_min = float(shifted(torch.tensor(1.0 / T, dtype=torch.float64)))
    t = (
        torch.linspace(1.0, t_min, steps, dtype=torch.float64)
        if steps > 1
        else torch.ones(1, dtype=torch.float64)
    )
    t = shifted(t)
    t = t.clamp(max=FLOW_T_MAX)
    sigmas = t / (1 - t)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def flow_sigma_to_t(sigma: Tensor | float) -> Tensor:
    """Flow time of a VE sigma: t = sigma / (1 + sigma) (so x_t = (1 - t) x0 + t eps = x / (1 + sigma))."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    return s / (1 + s)


def make_sigmas(
    schedule: DiscreteSchedule | None,
    steps: int,
    spacing: str,
    *,
    final_sigma: float = 0.0,
    steps_offset: int = 1,
    rho: float = 7.0,
    original_steps: int = 50,
    shift: float = 1.0,
    num_train_timesteps: int = 1000,
) -> Tensor:
    """Descending sigmas (steps + 1 entries) for one of SPACINGS; the options apply where named.

    - "leading": `steps_offset`, `final_sigma` (sigmas_leading)
    - "trailing", "linspace": `final_sigma`
    - "karras": `rho`, `final_sigma`; sigma range from `schedule`
    - "lcm": `original_steps`, `final_sigma`
    - "flow": `shift`, `num_train_timesteps`; `schedule` is ignored and may be None
    """
    if spacing == "flow":
        return sigmas_flow(steps, shift, num_train_timesteps=num_train_timesteps)
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if schedule is None:
        raise ValueError(
            f"spacing {spacing!r} needs the model's training schedule, got schedule=None"
        )
    if spacing == "leading":
        return sigmas_leading(schedule, steps, steps_offset=steps_offset, final_sigma=final_sigma)
    if spacing == "trailing":
        return sigmas_trailing(schedule, steps, final_sigma=final_sigma)
    if spacing == "linspace":
        return sigmas_linspace(schedule, steps, final_sigma=final_sigma)
    if spacing == "karras":
        return sigmas_karras(
            steps, schedule.sigma_min, schedule.sigma_max, rho, final_sigma=final_sigma
        )
    return sigmas_lcm(schedule, steps, original_steps, final_sigma=final_sigma)
