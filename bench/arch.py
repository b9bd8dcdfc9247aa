"""Random-weight models of the real architectures (configs in pipelines/configs/), for timing.

Speed does not depend on weight values, so benchmarks build the real SD1.5 / SD2.1 / SDXL
modules with random weights straight on the GPU in fp16. Weights are drawn small enough that
fp16 activations stay finite (a NaN image would send the serving path into its fp32 VAE retry
and time the wrong thing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

CONFIG_DIR = Path(__file__).resolve().parent.parent / "pipelines" / "configs"
CONFIG_FILES = {
    "sd15": "sd15.json",
    "sd21": "sd21_base_and_sd_turbo.json",
    "sdxl": "sdxl_base_and_sdxl_turbo.json",
}


@dataclass
class Architecture:
    name: str
    config: dict
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    text_encoder_2: torch.nn.Module | None


def load_config(name: str) -> dict:
    return json.loads((CONFIG_DIR / CONFIG_FILES[name]).read_text())


def _shrink_init(module: torch.nn.Module, std: float = 0.02) -> None:
    """Re-draw every weight as N(0, std^2) (biases zero) so fp16 stays finite."""
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            torch.nn.init.normal_(p, std=std)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(p)


def tiny_config(cfg: dict) -> dict:
    """The same architecture family shrunk to a few channels: exercises the bench on a CPU."""
    cfg = json.loads(json.dumps(cfg))
    unet, vae = cfg["unet"], cfg["vae"]
    levels = len(unet["block_out_channels"])
    unet.update(block_out_channels=[32] * levels, layers_per_block=1, attention_head_dim=4, norm_num_groups=8)
    if "transformer_layers_per_block" in unet:
        unet["transformer_layers_per_block"] = [1] * levels
    vae.update(block_out_channels=[8] * len(vae["block_out_channels"]), layers_per_block=1, norm_num_groups=4)
    text_keys = [k for k in ("text_encoder", "text_encoder_2") if k in cfg]
    for key in text_keys:
        cfg[key].update(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
    unet["cross_attention_dim"] = 16 * len(text_keys)
    if unet.get("addition_embed_type") == "text_time":
        unet.update(addition_time_embed_dim=8, projection_class_embeddings_input_dim=16 + 6 * 8)
    return cfg


def build_tiny_vae(device: str = "cuda", dtype: torch.dtype = torch.float16, tiny: bool = False) -> torch.nn.Module:
    """diffusers' AutoencoderTiny in TAESD's published layout (its defaults: 64 channels, 8x, 4 latent
    channels; the same for SD1/SD2 and SDXL latents), random weights; tiny: 8 channels (CPU runs)."""
    from diffusers import AutoencoderTiny

    channels = (8,) * 4 if tiny else (64,) * 4
    with torch.device(device):
        vae = AutoencoderTiny(encoder_block_out_channels=channels, decoder_block_out_channels=channels)
    _shrink_init(vae)
    return vae.to(dtype=dtype).eval().requires_grad_(False)


def build(name: str, device: str = "cuda", dtype: torch.dtype = torch.float16, tiny: bool = False) -> Architecture:
    """The named architecture with random weights on `device` in `dtype` (tiny: shrunk, for CPU runs)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = load_config(name)
    if tiny:
        cfg = tiny_config(cfg)

    def text_model(te_cfg: dict) -> torch.nn.Module:
        kwargs = {k: v for k, v in te_cfg.items() if k not in ("class", "note")}
        config = CLIPTextConfig(**kwargs)
        cls = CLIPTextModelWithProjection if te_cfg["class"] == "CLIPTextModelWithProjection" else CLIPTextModel
        return cls(config)

    with torch.device(device):
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        te = text_model(cfg["text_encoder"])
        te2 = text_model(cfg["text_encoder_2"]) if "text_encoder_2" in cfg else None
    for m in (unet, vae, te, te2):
        if m is not None:
            _shrink_init(m)
            m.to(dtype=dtype).eval().requires_grad_(False)
    return Architecture(name, cfg, unet, vae, te, te2)
