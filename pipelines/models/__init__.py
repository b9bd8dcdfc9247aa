"""Model wrappers, one file per family, and `assemble`: loaded modules -> LoadedModel.

Families: latent_unet (sd1, sd2, sdxl, bundled), dit, pixart, flow. Their constants live in
pipelines.models.families. Loaders (pipelines.loading) read modules from disk and call
`assemble` with diffusers folder names as keys.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from pipelines.model import FamilySpec, LoadedModel
from pipelines.models.discrete import DiscreteScheduleConfig
from pipelines.models.dit import DiTDenoiser
from pipelines.models.families import FAMILIES
from pipelines.models.latent_unet import LatentUNetDenoiser, LCMBoundary
from pipelines.models.pixart import PixArtDenoiser
from pipelines.text import ClipTextEncoder, ClipTokenizer, SDXLTextEncoder, T5TextEncoder
from pipelines.vae import KLAutoencoder

UNET_FAMILIES = ("sd1", "sd2", "sdxl", "bundled")


def _component(components: dict[str, object], name: str, family: str) -> torch.nn.Module:
    module = components.get(name)
    if module is None:
        raise ValueError(f"family {family!r} needs component {name!r}; got {sorted(components)}")
    return module  # type: ignore[return-value]


def _moved(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    module = module.to(device=device)
    if any(p.dtype != dtype for p in module.parameters() if p.is_floating_point()):
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


def assemble(
    family: str | FamilySpec,
    components: dict[str, object],
    scheduler_config: dict[str, object],
    *,
    model_id: str,
    device: torch.device | str,
    dtype: torch.dtype,
    controlnets: dict[str, torch.nn.Module] | None = None,
    description: str = "",
    text_directions: int = 1,
) -> LoadedModel:
    """Wrap loaded diffusers / transformers modules into a LoadedModel.

    `components` uses diffusers folder names: "unet" or "transformer", "vae", "text_encoder",
    "text_encoder_2" (SDXL), "tokenizer" (PixArt: a transformers T5 tokenizer). The VAE's own
    config sets the latent factor, channels and scaling factor; the scheduler config sets the
    training schedule and prediction type. The first ControlNet, if any, is attached to the
    denoiser (it runs only for rows whose conditioning carries a control image).
    `text_directions` 2: the CLIP context is the prompt's encoding then its word-reversed one
    (pipelines.text.ClipTextEncoder, both_directions); SD1 / SD2 / bundled only.
    """
    if isinstance(family, str) and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    spec = FAMILIES[family] if isinstance(family, str) else family
    if text_directions not in (1, 2) or (text_directions == 2 and (spec.name not in UNET_FAMILIES or spec.name == "sdxl")):
        raise ValueError(f"text_directions {text_directions} is not available for family {spec.name!r}")
    device = torch.device(device)
    controlnets = {name: _moved(c, device, dtype) for name, c in (controlnets or {}).items()}  # type: ignore[misc]

    vae_module = _moved(_component(components, "vae", spec.name), device, dtype)
    # SDXL's VAE overflows in fp16 unless it is the fp16-fix one (whose config says force_upcast false)
    upcast = spec.name == "sdxl" and bool(getattr(vae_module.config, "force_upcast", True))
    vae = KLAutoencoder(vae_module, upcast=upcast)
    config = DiscreteScheduleConfig.from_dict({"prediction_type": spec.prediction_type, **scheduler_config})
    spec = replace(
        spec,
        latent_channels=vae.latent_channels,
        latent_factor=vae.latent_factor,
        vae_scaling_factor=vae.scaling_factor,
        prediction_type=config.prediction_type,
    )

    text_encoder: ClipTextEncoder | SDXLTextEncoder | T5TextEncoder | None
    if spec.name in UNET_FAMILIES:
        unet = _moved(_component(components, "unet", spec.name), device, dtype)
        lcm = None
        if scheduler_config.get("_class_name") == "LCMScheduler":
            lcm = LCMBoundary(timestep_scaling=float(scheduler_config.get("timestep_scaling", 10.0)))  # type: ignore[arg-type]
        first_controlnet = next(iter(controlnets.values()), None)
        denoiser: object = LatentUNetDenoiser(
            unet, config, latent_factor=spec.latent_factor, controlnet=first_controlnet, lcm=lcm
        )
        encoder = _moved(_component(components, "text_encoder", spec.name), device, dtype)
        if spec.name == "sdxl":
            encoder_2 = _moved(_component(components, "text_encoder_2", spec.name), device, dtype)
            text_encoder = SDXLTextEncoder(
                encoder, encoder_2, default_size=(spec.default_height, spec.default_width)
            )
        else:
            text_encoder = ClipTextEncoder(encoder, ClipTokenizer(pad_token_id=spec.pad_token_id),
                                           both_directions=text_directions == 2)
    elif spec.name == "dit":
        transformer = _moved(_component(components, "transformer", spec.name), device, dtype)
        denoiser = DiTDenoiser(transformer, config)
        side = int(transformer.config.sample_size) * spec.latent_factor  # fixed positional grid
        spec = replace(spec, min_side=side, max_side=side, default_width=side, default_height=side, max_pixels=side * side)
        text_encoder = None
    elif spec.name == "pixart":
        transformer = _moved(_component(components, "transformer", spec.name), device, dtype)
        denoiser = PixArtDenoiser(transformer, config, latent_factor=spec.latent_factor)
        encoder = _moved(_component(components, "text_encoder", spec.name), device, dtype)
        tokenizer = components.get("tokenizer")
        if tokenizer is None:
            raise ValueError("family 'pixart' needs component 'tokenizer' (the model's T5 tokenizer)")
        text_encoder = T5TextEncoder(encoder, tokenizer, max_tokens=spec.max_tokens)
    else:
        raise ValueError(
            f"assemble does not build family {spec.name!r}; flow models are wrapped with "
            "pipelines.models.flow.FlowDenoiser around their velocity function"
        )

    return LoadedModel(
        id=model_id,
        family=spec,
        text_encoder=text_encoder,
        denoiser=denoiser,  # type: ignore[arg-type]
        vae=vae,
        device=device,
        dtype=dtype,
        controlnets=dict(controlnets),
        description=description,
    )


__all__ = ["FAMILIES", "assemble"]
