"""The bundled model's components and the two helper networks (judge, noisy-latent classifier).

The stack is SD1-shaped in miniature so the sd1-style serving path loads it unchanged:
CLIPTextModel (hidden 128: the 49,408-row CLIP embedding table is 12.6 MB in fp16, the largest
part of the text encoder, so a wider encoder would break the 40 MB budget), AutoencoderKL with
latent factor 4 (64 px images <-> 4 x 16 x 16 latents), UNet2DConditionModel over 16 x 16 latents.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModel

from training.data import COLOURS, GRID, SHAPES, SIZES

TEXT_HIDDEN = 128
LATENT_CHANNELS = 4
LATENT_FACTOR = 4

VAE_CONFIG: dict[str, object] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (32, 64, 128),
    "layers_per_block": 1,
    "latent_channels": LATENT_CHANNELS,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 1.0,  # replaced by 1 / std of training latents at export
}

UNET_CONFIG: dict[str, object] = {
    "sample_size": 16,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (64, 128, 160),
    "layers_per_block": 1,
    "cross_attention_dim": TEXT_HIDDEN,
    "attention_head_dim": 4,  # diffusers' legacy name: the number of heads per block
    "norm_num_groups": 32,
}

TEXT_CONFIG: dict[str, object] = {
    "vocab_size": 49408,
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 4 * TEXT_HIDDEN,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "projection_dim": TEXT_HIDDEN,
}


def build_vae() -> AutoencoderKL:
    """KL autoencoder, factor 4 (Rombach et al. 2022, sec. 3.1)."""
    return AutoencoderKL(**VAE_CONFIG)


def build_unet() -> UNet2DConditionModel:
    """Latent UNet with cross-attention at every resolution (16, 8, 4)."""
    return UNet2DConditionModel(**UNET_CONFIG)


def build_text_encoder() -> CLIPTextModel:
    """Small CLIP text transformer over the full CLIP BPE vocabulary."""
    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
    )


class Judge(nn.Module):
    """Per-cell attribute classifier on 64 px images: for each of the 9 grid cells, shape
    (empty + 6), colour (8) and size (2). Also returns a pooled feature for judge-space FID."""

    FEATURE_DIM = 256

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(3, 48), nn.MaxPool2d(2),  # 32
            _conv_block(48, 96), nn.MaxPool2d(2),  # 16
            _conv_block(96, 192), nn.MaxPool2d(2),  # 8
            _conv_block(192, 256),
        )
        self.cells = nn.AdaptiveAvgPool2d(GRID)
        self.head = nn.Conv2d(256, len(SHAPES) + 1 + len(COLOURS) + len(SIZES), 1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """images (B, 3, 64, 64) in [0, 1] -> shape (B, 9, 7), colour (B, 9, 8), size (B, 9, 2), feature (B, 256)."""
        h = self.body(images * 2 - 1)  # (B, 256, 8, 8)
        feature = h.mean(dim=(2, 3))
        logits = self.head(self.cells(h)).flatten(2).transpose(1, 2)  # (B, 9, 17)
        s, c = len(SHAPES) + 1, len(COLOURS)
        return logits[..., :s], logits[..., s : s + c], logits[..., s + c :], feature


class NoisyLatentClassifier(nn.Module):
    """p(y | x_t, t) on noisy latents for classifier guidance (Dhariwal & Nichol 2021, sec. 4):
    48 binary heads, one per (shape, colour) pair: is that pair in the scene."""

    HEADS = len(SHAPES) * len(COLOURS)

    def __init__(self, channels: int = 96) -> None:
        super().__init__()
        self.time = nn.Sequential(nn.Linear(64, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.stem = nn.Conv2d(LATENT_CHANNELS, channels, 3, padding=1)
        self.blocks = nn.ModuleList([_conv_block(channels, channels) for _ in range(3)])
        self.head = nn.Linear(channels, self.HEADS * 2)

    def forward(self, latents: Tensor, timesteps: Tensor) -> Tensor:
        """latents (B, 4, 16, 16) noisy, VP-scaled; timesteps (B,) in [0, 1000) -> logits (B, 48, 2)."""
        half = 32
        freqs = torch.exp(-torch.arange(half, device=latents.device) * (9.2 / half))
        angles = timesteps.float().view(-1, 1) * freqs.view(1, -1)
        temb = self.time(torch.cat((angles.sin(), angles.cos()), dim=1))  # (B, C)
        h = self.stem(latents)
        for block in self.blocks:
            h = h + block(h + temb.view(*temb.shape, 1, 1))
        return self.head(h.mean(dim=(2, 3))).view(-1, self.HEADS, 2)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())
