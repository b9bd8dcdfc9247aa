"""Which model classes a checkpoint may name, and how to build one empty from its config.

Class names come from files on disk (model_index.json, config.json), so they are looked up in
this explicit allow-list: a checkpoint can never make Darkroom import an arbitrary class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accelerate import init_empty_weights
from torch import nn

# Folder names of the components the loaders build, in diffusers' own naming.
TORCH_COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "controlnet")


def _diffusers(name: str) -> Callable[[dict[str, Any]], nn.Module]:
    def build(config: dict[str, Any]) -> nn.Module:
        import diffusers

        cls = getattr(diffusers, name)
        return cls.from_config(config)

    return build


def _transformers(name: str, config_name: str) -> Callable[[dict[str, Any]], nn.Module]:
    def build(config: dict[str, Any]) -> nn.Module:
        import transformers

        config_cls = getattr(transformers, config_name)
        cls = getattr(transformers, name)
        return cls(config_cls.from_dict(config))

    return build


def _autoencoder_tiny(config: dict[str, Any]) -> nn.Module:
    """AutoencoderTiny; its saved config repeats the decoder's channels as `block_out_channels`, which its
    constructor does not take (diffusers warns on every load otherwise)."""
    return _diffusers("AutoencoderTiny")({k: v for k, v in config.items() if k != "block_out_channels"})


def _transformer_2d(config: dict[str, Any]) -> nn.Module:
    """Old hub folders name `Transformer2DModel`; its norm_type says which model it is."""
    norm_type = config.get("norm_type")
    if norm_type == "ada_norm_zero":
        return _diffusers("DiTTransformer2DModel")(config)
    if norm_type == "ada_norm_single":
        return _diffusers("PixArtTransformer2DModel")(config)
    return _diffusers("Transformer2DModel")(config)


BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "UNet2DConditionModel": _diffusers("UNet2DConditionModel"),
    "UNet2DModel": _diffusers("UNet2DModel"),
    "AutoencoderKL": _diffusers("AutoencoderKL"),
    "AutoencoderTiny": _autoencoder_tiny,
    "ControlNetModel": _diffusers("ControlNetModel"),
    "DiTTransformer2DModel": _diffusers("DiTTransformer2DModel"),
    "PixArtTransformer2DModel": _diffusers("PixArtTransformer2DModel"),
    "Transformer2DModel": _transformer_2d,
    "CLIPTextModel": _transformers("CLIPTextModel", "CLIPTextConfig"),
    "CLIPTextModelWithProjection": _transformers("CLIPTextModelWithProjection", "CLIPTextConfig"),
    "T5EncoderModel": _transformers("T5EncoderModel", "T5Config"),
}

# Keys of a config that describe where it came from, not the architecture.
_NON_ARCHITECTURE_KEYS = ("class", "note", "notes", "_class_name", "_diffusers_version",
                          "_name_or_path", "architectures", "transformers_version")


def architecture_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without provenance keys, ready for a model class."""
    return {k: v for k, v in config.items() if k not in _NON_ARCHITECTURE_KEYS}


def build_empty(class_name: str, config: dict[str, Any], *, where: str) -> nn.Module:
    """An instance of an allow-listed class with its parameters on the meta device."""
    builder = BUILDERS.get(class_name)
    if builder is None:
        raise ValueError(
            f"{where}: model class {class_name!r} is not one Darkroom loads "
            f"(known: {', '.join(sorted(BUILDERS))})"
        )
    # Buffers stay real: some (position ids, sin-cos tables) are computed, never stored.
    with init_empty_weights(include_buffers=False):
        return builder(architecture_config(config))
