"""DiT (Peebles & Xie 2023): a class-conditional latent transformer as denoise(x, sigma, cond) -> x0.

The model predicts eps and, in the other half of its output channels, the variance
interpolation of Nichol & Dhariwal 2021 ("learned sigma"). Deterministic and SDE samplers only
need eps: the first `in_channels` output channels. The unconditional class for classifier-free
guidance is the extra label `num_embeds_ada_norm` (1000 for the ImageNet models).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning
from pipelines.model import module_dtype
from pipelines.models.discrete import DiscreteScheduleConfig, DiscreteVPDenoiser

# DiT's training schedule (Peebles & Xie 2023, sec. 4: linear betas 1e-4 .. 0.02, 1000 steps)
DIT_SCHEDULE = DiscreteScheduleConfig(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=0.0001,
    beta_end=0.02,
    prediction_type="epsilon",
    timestep_spacing="linspace",
    steps_offset=0,
    set_alpha_to_one=True,
)


class DiTDenoiser(DiscreteVPDenoiser):
    """DiTTransformer2DModel with class labels from cond.class_labels."""

    def __init__(self, transformer: torch.nn.Module, config: DiscreteScheduleConfig = DIT_SCHEDULE) -> None:
        super().__init__(config)
        self.transformer = transformer.eval()
        self.in_channels = int(transformer.config.in_channels)
        self.null_class = int(transformer.config.num_embeds_ada_norm)  # the CFG "no class" label

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor:
        """x (B, C, h, w) -> x0; cond.class_labels (B,) int64, null_class for uncond rows."""
        if cond.class_labels is None:
            raise ValueError("DiT needs class_labels in the conditioning")
        dtype = module_dtype(self.transformer)
        z = (self.c_in(sigma, x) * x).to(dtype)
        t = self.timesteps(sigma).to(x.device, torch.float32)
        output = self.transformer(
            z, timestep=t, class_labels=cond.class_labels.to(x.device), return_dict=False
        )[0]  # (B, 2C, h, w) with learned sigma, else (B, C, h, w)
        eps = output[:, : self.in_channels]
        return self.x0_from_output(x, sigma, eps)
