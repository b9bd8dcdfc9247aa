"""Latent UNets (SD1, SD2, SDXL, bundled) wrapped into the denoiser contract x -> x0.

The UNet sees z = c_in * x at the discrete timestep t of its training schedule
(pipelines.models.discrete). SDXL adds text_time micro-conditioning (pooled text embeddings and
six size ids; Podell et al. 2023, sec. 2.2). ControlNet (Zhang et al. 2023) adds residuals to the
UNet's skip connections and middle block, each row scaled by its own conditioning scale.

Latent consistency models (Luo et al. 2023, eq. 9; Song et al. 2023, eq. 3) wrap the
prediction in the boundary condition
    x0 = c_skip(t) * z + c_out(t) * x0_model,
    c_skip = sigma_data^2 / ((10 t)^2 + sigma_data^2),  c_out = 10 t / sqrt((10 t)^2 + sigma_data^2),
with timestep_scaling 10 and sigma_data 0.5 as the LCM scheduler applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning, to_device
from pipelines.model import module_dtype
from pipelines.models.discrete import DiscreteScheduleConfig, DiscreteVPDenoiser


@dataclass(frozen=True)
class LCMBoundary:
    """Consistency-model boundary condition constants (diffusers LCMScheduler defaults)."""

    timestep_scaling: float = 10.0
    sigma_data: float = 0.5
    # guidance scale w fed to LCM-distilled UNets with time_cond_proj_dim (embedded as w - 1)
    guidance_scale: float = 8.0

    def scalings(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(c_skip, c_out) for float64 timesteps t."""
        scaled = t.to(torch.float64) * self.timestep_scaling
        c_skip = self.sigma_data**2 / (scaled**2 + self.sigma_data**2)
        c_out = scaled / torch.sqrt(scaled**2 + self.sigma_data**2)
        return c_skip, c_out


def guidance_scale_embedding(w: Tensor, dim: int) -> Tensor:
    """(B, dim) sinusoidal embedding of 1000 * w (the LCM UNet's timestep_cond input)."""
    w = w.to(torch.float32) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :].to(w.device)  # (B, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class LatentUNetDenoiser(DiscreteVPDenoiser):
    """UNet2DConditionModel (+ optional ControlNetModel) as denoise(x, sigma, cond) -> x0."""

    def __init__(
        self,
        unet: torch.nn.Module,
        config: DiscreteScheduleConfig,
        *,
        latent_factor: int,
        controlnet: torch.nn.Module | None = None,
        lcm: LCMBoundary | None = None,
    ) -> None:
        super().__init__(config)
        self.unet = unet.eval()
        self.controlnet = None if controlnet is None else controlnet.eval()
        self.lcm = lcm
        self.latent_factor = latent_factor  # pixels per latent cell: SDXL time_ids from x's size
        self.uses_text_time = getattr(unet.config, "addition_embed_type", None) == "text_time"
        self.time_cond_dim = getattr(unet.config, "time_cond_proj_dim", None)

    def with_controlnet(self, controlnet: torch.nn.Module | None) -> LatentUNetDenoiser:
        """The same UNet with another ControlNet attached (shares all weights)."""
        other = object.__new__(LatentUNetDenoiser)
        other.__dict__.update(self.__dict__)
        other.controlnet = None if controlnet is None else controlnet.eval()
        return other

    @property
    def embeds_guidance(self) -> bool:
        """True for guidance-distilled LCM UNets: w enters as an embedding, not as a CFG pass."""
        return self.lcm is not None and self.time_cond_dim is not None

    def with_lcm_guidance(self, guidance_scale: float) -> LatentUNetDenoiser:
        """The same UNet with the LCM guidance embedding set to w = guidance_scale (shares all weights)."""
        if self.lcm is None:
            raise ValueError("with_lcm_guidance needs an LCM model")
        other = object.__new__(LatentUNetDenoiser)
        other.__dict__.update(self.__dict__)
        other.lcm = replace(self.lcm, guidance_scale=guidance_scale)
        return other

    def _added_cond(self, x: Tensor, cond: Conditioning, dtype: torch.dtype) -> dict[str, Tensor] | None:
        if not self.uses_text_time:
            return None
        if cond.pooled_text_embeddings is None:
            raise ValueError("SDXL UNet needs pooled_text_embeddings in the conditioning")
        time_ids = cond.time_ids
        if time_ids is None:  # size from the latent: (orig_h, orig_w, 0, 0, target_h, target_w)
            h, w = x.shape[-2] * self.latent_factor, x.shape[-1] * self.latent_factor
            time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).repeat(x.shape[0], 1)
        return {
            "text_embeds": cond.pooled_text_embeddings.to(x.device, dtype),
            "time_ids": time_ids.to(x.device, dtype),
        }

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor:
        """x (B, C, h, w) at per-row sigma (B,) -> x0 estimate, same shape and dtype as x."""
        dtype = module_dtype(self.unet)
        t = self.timesteps(sigma)  # (B,) float64
        z = (self.c_in(sigma, x) * x).to(dtype)  # (B, C, h, w) VP latent
        timestep = t.to(x.device, torch.float32)
        if cond.text_embeddings is None:
            raise ValueError("a latent UNet needs text_embeddings in the conditioning")
        context = cond.text_embeddings.to(x.device, dtype)  # (B, L, D)
        added = self._added_cond(x, cond, dtype)
        timestep_cond = None
        if self.time_cond_dim is not None:
            w = torch.full((x.shape[0],), (self.lcm.guidance_scale if self.lcm else 1.0) - 1.0)
            timestep_cond = to_device(guidance_scale_embedding(w, self.time_cond_dim), x.device).to(dtype)

        down_residuals: list[Tensor] | None = None
        mid_residual: Tensor | None = None
        if cond.control_image is not None:
            if self.controlnet is None:
                raise ValueError("control_image given but the model has no ControlNet attached")
            scale = cond.control_scale
            if scale is None:
                scale = torch.ones(x.shape[0])
            down, mid = self.controlnet(
                z,
                timestep,
                encoder_hidden_states=context,
                controlnet_cond=cond.control_image.to(x.device, dtype),
                conditioning_scale=1.0,
                added_cond_kwargs=added,
                return_dict=False,
            )
            row_scale = scale.to(x.device, dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1); 0 = no control
            down_residuals = [r * row_scale for r in down]
            mid_residual = mid * row_scale

        output = self.unet(
            z,
            timestep,
            encoder_hidden_states=context,
            timestep_cond=timestep_cond,
            added_cond_kwargs=added,
            down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual,
            return_dict=False,
        )[0]
        x0 = self.x0_from_output(x, sigma, output)
        if self.lcm is not None:
            c_skip, c_out = self.lcm.scalings(t)
            shape = (-1, *([1] * (x.dim() - 1)))
            c_skip = c_skip.to(x.device, x.dtype).view(shape)
            c_out = c_out.to(x.device, x.dtype).view(shape)
            x0 = c_out * x0 + c_skip * self.c_in(sigma, x) * x
        return x0
