"""A loaded model: the parts every serving path needs, behind small protocols.

`LoadedModel` is what loaders (pipelines.loading) build and what `text_to_image` and the
server's engine consume. Each family's wrapper (pipelines/models/<family>.py) fills it in.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning

_DTYPES: weakref.WeakKeyDictionary[torch.nn.Module, tuple[torch.dtype, torch.dtype]] = weakref.WeakKeyDictionary()


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """`module.dtype`, cached per module. diffusers' property walks every submodule looking for
    casting hooks on each read (~0.6 ms on the bundled UNet on CPU, more on SD-sized ones) with
    the GIL held, once per denoiser call and per decode; the cache is read again whenever the
    module's first parameter changes dtype (a cast moves every parameter)."""
    first = next(module.parameters(), None)
    if first is None:
        return module.dtype  # type: ignore[no-any-return]
    cached = _DTYPES.get(module)
    if cached is not None and cached[0] == first.dtype:
        return cached[1]
    dtype: torch.dtype = module.dtype  # type: ignore[assignment]
    _DTYPES[module] = (first.dtype, dtype)
    return dtype


@dataclass(frozen=True)
class FamilySpec:
    """Constants of one model family; never buried in code."""

    name: str  # "sd1" | "sd2" | "sdxl" | "dit" | "pixart" | "flow" | "bundled"
    latent_channels: int  # 4 for SD VAEs
    latent_factor: int  # pixels per latent cell along each side (8 for SD VAEs)
    vae_scaling_factor: float  # latents = vae.encode(x) * scaling_factor
    prediction_type: str  # "epsilon" | "v_prediction" | "sample" | "flow"
    pad_token_id: int = 49407  # SD1.x / SDXL-1: 49407; SD2.x / SDXL-2: 0
    max_tokens: int = 77
    default_sampler: str = "ddim"
    default_steps: int = 25
    default_guidance: float = 7.5
    default_width: int = 512
    default_height: int = 512
    min_side: int = 64  # pixels
    max_side: int = 1024  # pixels
    max_pixels: int = 1024 * 1024


class TextEncoder(Protocol):
    """Prompts -> per-row conditioning (one row per prompt) and which prompts were truncated."""

    def encode(self, prompts: list[str]) -> tuple[Conditioning, list[bool]]: ...


class LatentAutoencoder(Protocol):
    """Pixels (B, 3, H, W) in [0, 1] <-> scaled latents (B, C, H/f, W/f)."""

    def decode(self, latents: Tensor) -> Tensor: ...

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


class ModelDenoiser(Protocol):
    """A model wrapped into the denoiser contract, plus what samplers need of its schedule."""

    sigma_min: float
    sigma_max: float

    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor: ...

    def prior_scale(self, sigma: float) -> float:
        """Std of x at `sigma` for unit-variance noise: the initial x is noise * prior_scale."""
        ...

    def to_decoder_input(self, x: Tensor, sigma: float) -> Tensor:
        """The latent the VAE decodes when sampling stops at `sigma` (VP models: x / sqrt(1+sigma^2))."""
        ...

    def sigmas(self, steps: int, spacing: str) -> Tensor:
        """Descending float64 sigmas (steps + 1 entries) in the model's own schedule."""
        ...


@dataclass
class LoadedModel:
    """Everything needed to turn a prompt into an image with one model."""

    id: str
    family: FamilySpec
    text_encoder: TextEncoder | None  # None for class-conditional models (DiT)
    denoiser: ModelDenoiser
    vae: LatentAutoencoder
    device: torch.device
    dtype: torch.dtype
    controlnets: dict[str, object] = field(default_factory=dict)  # name -> ControlNet wrapper
    # fast mode: a distilled tiny decoder on the same latents (pipelines.vae.TinyAutoencoder), for requests
    # that ask for "decoder": "tiny"; None when the manifest attaches none
    tiny_vae: LatentAutoencoder | None = None
    description: str = ""  # shown by /v1/models; says "tiny random" where that is what it is
