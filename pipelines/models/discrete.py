"""The part every discrete-time VP model wrapper shares: parametrisations and the schedule.

Notation (Karras et al. 2022, "Elucidating the design space", Table 1, VP column):
    x      the latent in the variance-exploding view, x = x0 + sigma * eps
    z      the model's own (variance-preserving) input, z = c_in * x, c_in = 1 / sqrt(sigma^2 + 1)
    abar   alphas_cumprod(t) of the training schedule, sigma = sqrt((1 - abar) / abar)
    t      the discrete training timestep (a float here), t = schedule.sigma_to_t(sigma)
The model's output becomes x0 by its prediction type:
    epsilon:       x0 = x - sigma * eps
    v_prediction:  x0 = c_in * z - sigma * c_in * v   (Salimans & Ho 2022, eq. 2-3: v = a eps - s x0)
    sample:        x0 = model output
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pipelines import schedules

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class DiscreteScheduleConfig:
    """What a model's scheduler_config.json says about its schedule (diffusers field names)."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 1
    # False: sampling stops at sigma(t = 0) ~ 0.029 (SD's DDIM config); True: at sigma = 0
    set_alpha_to_one: bool = False
    # DDIM's clip_sample: x0 clamped to [-clip_sample_range, clip_sample_range] (off for SD)
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    # LCM: the distillation grid's size (LCMScheduler's original_inference_steps)
    original_inference_steps: int = 50

    @staticmethod
    def from_dict(config: dict[str, Any]) -> DiscreteScheduleConfig:
        """Read the fields this wrapper uses; the rest of a scheduler config is ignored."""
        defaults = DiscreteScheduleConfig()
        return DiscreteScheduleConfig(
            num_train_timesteps=int(config.get("num_train_timesteps", defaults.num_train_timesteps)),
            beta_schedule=str(config.get("beta_schedule", defaults.beta_schedule)),
            beta_start=float(config.get("beta_start", defaults.beta_start)),
            beta_end=float(config.get("beta_end", defaults.beta_end)),
            prediction_type=str(config.get("prediction_type", defaults.prediction_type)),
            timestep_spacing=str(config.get("timestep_spacing", defaults.timestep_spacing)),
            steps_offset=int(config.get("steps_offset", defaults.steps_offset)),
            set_alpha_to_one=bool(config.get("set_alpha_to_one", defaults.set_alpha_to_one)),
            clip_sample=bool(config.get("clip_sample", defaults.clip_sample)),
            clip_sample_range=float(config.get("clip_sample_range", defaults.clip_sample_range)),
            original_inference_steps=int(
                config.get("original_inference_steps", defaults.original_inference_steps)
            ),
        )


class DiscreteVPDenoiser:
    """Base of the VP wrappers: sigma <-> t, c_in, prediction type -> x0, the model's sigmas."""

    def __init__(self, config: DiscreteScheduleConfig) -> None:
        if config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {config.prediction_type!r}"
            )
        self.config = config
        self.prediction_type = config.prediction_type
        self.default_spacing = config.timestep_spacing
        self.schedule = schedules.training_schedule(
            config.beta_schedule, config.beta_start, config.beta_end, config.num_train_timesteps
        )
        self.sigma_min = self.schedule.sigma_min  # sigma(t = 0)
        self.sigma_max = self.schedule.sigma_max  # sigma(t = T - 1)
        self._log_sigmas: dict[torch.device, Tensor] = {}  # log sigma(t) table per device

    def prior_scale(self, sigma: float) -> float:
        """Std of x at sigma for unit-variance noise: sqrt(sigma^2 + 1) (the VP latent is noise)."""
        return float((sigma**2 + 1.0) ** 0.5)

    def to_decoder_input(self, x: Tensor, sigma: float) -> Tensor:
        """The VP latent z = x / sqrt(sigma^2 + 1) that the VAE decodes when sampling stops at sigma."""
        return x / (sigma**2 + 1.0) ** 0.5

    def sigmas(self, steps: int, spacing: str | None = None, *, final_sigma: float | None = None) -> Tensor:
        """Descending float64 sigmas (steps + 1) on the model's timesteps (pipelines.schedules spacings).

        With set_alpha_to_one=False (SD's DDIM config) sampling stops at sigma(t = 0) ~ 0.029, as
        diffusers' DDIM does, unless the last timestep already is t = 0.
        """
        sigmas = schedules.make_sigmas(
            self.schedule,
            steps,
            spacing or self.default_spacing,
            steps_offset=self.config.steps_offset,
            original_steps=self.config.original_inference_steps,
        )
        if final_sigma is None and not self.config.set_alpha_to_one and float(sigmas[-2]) > self.sigma_min:
            final_sigma = self.sigma_min
        if final_sigma is not None:
            sigmas[-1] = final_sigma
        return sigmas

    def timesteps(self, sigma: Tensor) -> Tensor:
        """(B,) float64 timesteps for (B,) sigmas on sigma's device (schedules.DiscreteSchedule.sigma_to_t's map).

        Log-sigma interpolation between table entries, computed where sigma lives so a GPU step
        needs no host round trip.
        """
        log_sigmas = self._log_sigmas.get(sigma.device)
        if log_sigmas is None:
            log_sigmas = self.schedule.sigmas.log().to(sigma.device)  # (T,) ascending
            self._log_sigmas[sigma.device] = log_sigmas
        log_s = sigma.to(torch.float64).clamp(self.sigma_min, self.sigma_max).log()
        low = (torch.searchsorted(log_sigmas, log_s, right=True) - 1).clamp(0, log_sigmas.numel() - 2)
        lo, hi = log_sigmas[low], log_sigmas[low + 1]
        return low.to(torch.float64) + (log_s - lo) / (hi - lo)

    @staticmethod
    def c_in(sigma: Tensor, like: Tensor) -> Tensor:
        """1 / sqrt(sigma^2 + 1), shaped (B, 1, 1, 1) in like's dtype."""
        c = 1.0 / torch.sqrt(sigma.to(torch.float64) ** 2 + 1.0)
        return c.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def x0_from_output(self, x: Tensor, sigma: Tensor, output: Tensor) -> Tensor:
        """x0 from the model's output by prediction type (see the module docstring)."""
        output = output.to(x.dtype)
        s = sigma.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        if self.prediction_type == "epsilon":
            x0 = x - s * output
        elif self.prediction_type == "v_prediction":
            c_in = self.c_in(sigma, x)
            x0 = c_in * c_in * x - s * c_in * output
        else:
            x0 = output
        if self.config.clip_sample:
            limit = self.config.clip_sample_range
            x0 = x0.clamp(-limit, limit)
        return x0
