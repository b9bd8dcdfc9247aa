"""The constants of each model family, named once (facts from the public model configs).

VAE scaling factors: SD1 / SD2 / DiT / PixArt VAEs 0.18215, SDXL VAE 0.13025. Pad ids: SD1.x and
SDXL's first tokenizer pad with EOS (49407), SD2.x and SDXL's second with "!" (0), T5 with 0.
"""

from __future__ import annotations

from pipelines.model import FamilySpec

SD1 = FamilySpec(
    name="sd1",
    latent_channels=4,
    latent_factor=8,
    vae_scaling_factor=0.18215,
    prediction_type="epsilon",
    pad_token_id=49407,
    default_sampler="ddim",
    default_steps=25,
    default_guidance=7.5,
    default_width=512,
    default_height=512,
    min_side=64,
    max_side=1024,
    max_pixels=1024 * 1024,
)

# SD2.1-base and SD-Turbo predict epsilon; the 768-v model's scheduler config says v_prediction
SD2 = FamilySpec(
    name="sd2",
    latent_channels=4,
    latent_factor=8,
    vae_scaling_factor=0.18215,
    prediction_type="epsilon",
    pad_token_id=0,
    default_sampler="ddim",
    default_steps=25,
    default_guidance=7.5,
    default_width=512,
    default_height=512,
    min_side=64,
    max_side=1024,
    max_pixels=1024 * 1024,
)

SDXL = FamilySpec(
    name="sdxl",
    latent_channels=4,
    latent_factor=8,
    vae_scaling_factor=0.13025,
    prediction_type="epsilon",
    pad_token_id=49407,  # the second tokenizer pads with 0 (pipelines.text.SDXLTextEncoder)
    default_sampler="ddim",
    default_steps=30,
    default_guidance=5.0,
    default_width=1024,
    default_height=1024,
    min_side=256,
    max_side=2048,
    max_pixels=2048 * 2048,
)

# DiT-XL/2-256: class-conditional, fixed 32x32 latent grid (positional embedding), learned sigma
DIT = FamilySpec(
    name="dit",
    latent_channels=4,
    latent_factor=8,
    vae_scaling_factor=0.18215,
    prediction_type="epsilon",
    pad_token_id=0,
    max_tokens=0,
    default_sampler="ddim",
    default_steps=25,
    default_guidance=4.0,
    default_width=256,
    default_height=256,
    min_side=256,
    max_side=256,
    max_pixels=256 * 256,
)

# PixArt-alpha 512: T5 text (120 tokens, pad 0), learned sigma
PIXART = FamilySpec(
    name="pixart",
    latent_channels=4,
    latent_factor=8,
    vae_scaling_factor=0.18215,
    prediction_type="epsilon",
    pad_token_id=0,
    max_tokens=120,
    default_sampler="ddim",
    default_steps=20,
    default_guidance=4.5,
    default_width=512,
    default_height=512,
    min_side=256,
    max_side=1024,
    max_pixels=1024 * 1024,
)

# Rectified-flow velocity models (x_t = (1 - t) x0 + t eps); sizes follow the model
FLOW = FamilySpec(
    name="flow",
    latent_channels=4,
    latent_factor=8,
    vae_scaling_factor=0.18215,
    prediction_type="flow",
    default_sampler="euler",
    default_steps=28,
    default_guidance=4.0,
)

# Darkroom's own small model (training/): SD1-like stack at low resolution; the loader
# replaces sizes and defaults from the manifest
BUNDLED = FamilySpec(
    name="bundled",
    latent_channels=4,
    latent_factor=4,
    vae_scaling_factor=1.0,
    prediction_type="epsilon",
    pad_token_id=49407,
    default_sampler="ddim",
    default_steps=25,
    default_guidance=4.0,
    default_width=64,
    default_height=64,
    min_side=32,
    max_side=256,
    max_pixels=256 * 256,
)

FAMILIES: dict[str, FamilySpec] = {f.name: f for f in (SD1, SD2, SDXL, DIT, PIXART, FLOW, BUNDLED)}
