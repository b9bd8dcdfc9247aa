"""PixArt-alpha (Chen et al. 2023): a T5-conditioned latent transformer as denoise -> x0.

T5 hidden states and their mask arrive in cond.text_embeddings / cond.text_mask. Like DiT the
output carries a learned-sigma half: eps is the first `in_channels` channels. The 1024-px
models (sample_size 128) also take the resolution (h, w) and aspect ratio h / w in pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning
from pipelines.model import module_dtype
from pipelines.models.discrete import DiscreteScheduleConfig, DiscreteVPDenoiser

# PixArt-alpha's scheduler config: linear betas 1e-4 .. 0.02, epsilon, 1000 steps
PIXART_SCHEDULE = DiscreteScheduleConfig(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=0.0001,
    beta_end=0.02,
    prediction_type="epsilon",
    timestep_spacing="linspace",
    steps_offset=0,
    set_alpha_to_one=True,
)


class PixArtDenoiser(DiscreteVPDenoiser):
    """PixArtTransformer2DModel with T5 context, mask and (where used) size conditions."""

    def __init__(
        self,
        transformer: torch.nn.Module,
        config: DiscreteScheduleConfig = PIXART_SCHEDULE,
        *,
        latent_factor: int = 8,
    ) -> None:
        super().__init__(config)
        self.transformer = transformer.eval()
        self.in_channels = int(transformer.config.in_channels)
        self.latent_factor = latent_factor
        self.uses_size = bool(getattr(transformer, "use_additional_conditions", False))

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor:
        """x (B, C, h, w) -> x0 from T5 context (B, L, D) and mask (B, L)."""
        if cond.text_embeddings is None:
            raise ValueError("PixArt needs text_embeddings in the conditioning")
        dtype = module_dtype(self.transformer)
        rows = x.shape[0]
        z = (self.c_in(sigma, x) * x).to(dtype)
        t = self.timesteps(sigma).to(x.device, torch.float32)
        added: dict[str, Tensor | None] = {"resolution": None, "aspect_ratio": None}
        if self.uses_size:
            h, w = x.shape[-2] * self.latent_factor, x.shape[-1] * self.latent_factor
            added = {
                "resolution": torch.tensor([[h, w]], device=x.device, dtype=dtype).repeat(rows, 1),
                "aspect_ratio": torch.tensor([[h / w]], device=x.device, dtype=dtype).repeat(rows, 1),
            }
        mask = None if cond.text_mask is None else cond.text_mask.to(x.device)
        output = self.transformer(
            z,
            encoder_hidden_states=cond.text_embeddings.to(x.device, dtype),
            encoder_attention_mask=mask,
            timestep=t,
            added_cond_kwargs=added,
            return_dict=False,
        )[0]  # (B, 2C, h, w) with learned sigma
        eps = output[:, : self.in_channels]
        return self.x0_from_output(x, sigma, eps)
