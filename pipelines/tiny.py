"""Tiny random models of the real architectures, for tests and for serving before real weights exist.

Their outputs are noise-like images: they prove wiring (conditioning, guidance, scaling,
timestep maps), never quality. Every LoadedModel built here says so in its description.
Configs follow the shapes of diffusers' own CPU tests (two UNet levels of 32 / 64 channels,
32-wide CLIP text towers), with the real 49,408-id CLIP vocabulary so real token ids fit.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from diffusers import AutoencoderKL, ControlNetModel, DiTTransformer2DModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from pipelines.model import LoadedModel
from pipelines.models import assemble
from pipelines.text import BOS_ID, EOS_ID, VOCAB_SIZE

TINY_DESCRIPTION = "tiny random model - not trained"

# the DDIM config of SD1.5 / SD2.1-base / SDXL (scheduler_config.json)
SD_SCHEDULER_CONFIG: dict[str, object] = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def _clip_config(*, pad_token_id: int, hidden_act: str = "quick_gelu") -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=pad_token_id,
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=5,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        projection_dim=32,
    )


def _tiny_vae(scaling_factor: float) -> AutoencoderKL:
    # two levels: latent factor 2
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        scaling_factor=scaling_factor,
    )


def _tiny_sizes(model: LoadedModel) -> LoadedModel:
    model.family = replace(
        model.family,
        default_width=32,
        default_height=32,
        min_side=8,
        max_side=256,
        max_pixels=256 * 256,
        default_steps=10,
    )
    return model


def tiny_sd1_components(seed: int = 0, *, time_cond_proj_dim: int | None = None) -> dict[str, torch.nn.Module]:
    """UNet, VAE and CLIP text model of a tiny SD1-shaped model, seeded (LCM UNets: time_cond_proj_dim)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            time_cond_proj_dim=time_cond_proj_dim,
        )
        vae = _tiny_vae(0.18215)
        text_encoder = CLIPTextModel(_clip_config(pad_token_id=EOS_ID))
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def tiny_sd1(seed: int = 0, *, controlnet: bool = False) -> LoadedModel:
    """A tiny random SD1-shaped model (DDIM config of SD1.5), optionally with a tiny ControlNet."""
    components = tiny_sd1_components(seed)
    controlnets = {"tiny-control": tiny_controlnet(seed + 1)} if controlnet else None
    model = assemble(
        "sd1",
        components,  # type: ignore[arg-type]
        SD_SCHEDULER_CONFIG,
        model_id="tiny-sd1",
        device="cpu",
        dtype=torch.float32,
        controlnets=controlnets,
        description=TINY_DESCRIPTION,
    )
    return _tiny_sizes(model)


def tiny_sd2(seed: int = 0, *, prediction_type: str = "v_prediction") -> LoadedModel:
    """A tiny random SD2-shaped model: pad id 0, v-prediction (the 768-v models) by default."""
    components = tiny_sd1_components(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        components["text_encoder"] = CLIPTextModel(_clip_config(pad_token_id=0, hidden_act="gelu"))
    model = assemble(
        "sd2",
        components,  # type: ignore[arg-type]
        {**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type},
        model_id="tiny-sd2",
        device="cpu",
        dtype=torch.float32,
        description=TINY_DESCRIPTION,
    )
    return _tiny_sizes(model)


# LCM-distilled SD (latent-consistency/lcm-lora-sdv1-5 style) scheduler config
LCM_SCHEDULER_CONFIG: dict[str, object] = {
    **SD_SCHEDULER_CONFIG,
    "_class_name": "LCMScheduler",
    "set_alpha_to_one": True,
    "original_inference_steps": 50,
    "timestep_scaling": 10.0,
}


def tiny_lcm(seed: int = 0) -> LoadedModel:
    """A tiny random LCM-shaped SD1 model: guidance-embedding UNet, consistency boundary condition."""
    model = assemble(
        "sd1",
        tiny_sd1_components(seed, time_cond_proj_dim=8),  # type: ignore[arg-type]
        LCM_SCHEDULER_CONFIG,
        model_id="tiny-lcm",
        device="cpu",
        dtype=torch.float32,
        description=TINY_DESCRIPTION,
    )
    model = _tiny_sizes(model)
    model.family = replace(model.family, default_sampler="lcm", default_steps=4, default_guidance=8.0)
    return model


def tiny_sdxl_components(seed: int = 0) -> dict[str, torch.nn.Module]:
    """UNet (text_time), VAE and both CLIP text towers of a tiny SDXL-shaped model, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=32 + 6 * 8,  # pooled + 6 time ids x 8
            cross_attention_dim=64,  # 32 (CLIP-L stand-in) + 32 (bigG stand-in)
            norm_num_groups=1,
        )
        vae = _tiny_vae(0.13025)
        text_encoder = CLIPTextModel(_clip_config(pad_token_id=EOS_ID))
        text_encoder_2 = CLIPTextModelWithProjection(_clip_config(pad_token_id=0, hidden_act="gelu"))
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2}


def tiny_sdxl(seed: int = 0) -> LoadedModel:
    """A tiny random SDXL-shaped model (two text towers, pooled embeddings, time ids)."""
    model = assemble(
        "sdxl",
        tiny_sdxl_components(seed),  # type: ignore[arg-type]
        SD_SCHEDULER_CONFIG,
        model_id="tiny-sdxl",
        device="cpu",
        dtype=torch.float32,
        description=TINY_DESCRIPTION,
    )
    model = _tiny_sizes(model)
    assert model.text_encoder is not None
    model.text_encoder.default_size = (model.family.default_height, model.family.default_width)  # type: ignore[union-attr]
    return model


def tiny_controlnet(seed: int = 0, *, cross_attention_dim: int = 32) -> ControlNetModel:
    """A tiny ControlNet matching tiny_sd1's UNet; its zero-initialised convs get random weights.

    A freshly initialised ControlNet adds exactly zero; random output convs make its effect,
    and the conditioning scale, visible in tests.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controlnet = ControlNetModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            in_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            cross_attention_dim=cross_attention_dim,
            conditioning_embedding_out_channels=(16, 32),  # downsamples by 2 = the tiny VAE's factor
        )
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        zero_convs.append(controlnet.controlnet_cond_embedding.conv_out)
        with torch.no_grad():
            for conv in zero_convs:
                conv.weight.normal_(0.0, 0.1)
                conv.bias.normal_(0.0, 0.1)
    return controlnet.eval()


def tiny_dit(seed: int = 0, *, num_classes: int = 10) -> LoadedModel:
    """A tiny random DiT (learned sigma: 8 output channels) on an 8x8 latent grid; null class = num_classes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            sample_size=8,
            patch_size=2,
            num_embeds_ada_norm=num_classes,
        )
        vae = _tiny_vae(0.18215)
    scheduler_config: dict[str, object] = {
        "num_train_timesteps": 1000,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
        "steps_offset": 0,
        "set_alpha_to_one": True,
        "clip_sample": False,
    }
    model = assemble(
        "dit",
        {"transformer": transformer, "vae": vae},
        scheduler_config,
        model_id="tiny-dit",
        device="cpu",
        dtype=torch.float32,
        description=TINY_DESCRIPTION,
    )
    model.family = replace(model.family, default_steps=10)
    return model
