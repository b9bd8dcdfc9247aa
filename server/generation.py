"""What passes between the HTTP side and the engine: plain dataclasses, no torch.

A route validates a request against the model's `ModelCard`, resolves every default into a
`GenerationSpec`, and submits it; the engine answers with a `GenerationResult` (or raises a
server.errors.DarkroomError) and reports `Progress` along the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class SamplerCard:
    """A sampler as the HTTP side may offer it."""

    name: str
    min_steps: int
    max_steps: int
    description: str = ""


@dataclass(frozen=True)
class ModelCard:
    """What the HTTP side may know about a served model (limits and defaults)."""

    id: str
    family: str
    description: str
    text_conditioned: bool
    samplers: tuple[SamplerCard, ...]
    controlnets: tuple[str, ...]
    default_sampler: str
    default_steps: int
    default_guidance: float
    default_width: int
    default_height: int
    latent_factor: int
    min_side: int
    max_side: int
    max_pixels: int  # per image
    max_num_images: int  # per request: rows of one request must fit one forward pass
    num_classes: int | None = None  # class-conditional models (DiT): the prompt is a class id below this
    # models served with a noisy-latent classifier: prompt -> one label per head (ValueError when
    # the classifier cannot label the prompt); None: no classifier guidance for this model
    classifier_labels: Callable[[str], tuple[int, ...]] | None = None
    decoders: tuple[Literal["full", "tiny"], ...] = ("full",)  # "tiny" too when the model has a tiny decoder (fast mode)

    def sampler(self, name: str) -> SamplerCard | None:
        return next((s for s in self.samplers if s.name == name), None)


@dataclass(frozen=True)
class GenerationSpec:
    """One validated request with every default resolved. Images are uint8 (H, W, 3) arrays."""

    id: str
    model: str
    prompt: str  # never logged
    negative_prompt: str  # never logged
    sampler: str
    steps: int
    guidance: float
    seed: int
    width: int
    height: int
    num_images: int
    output_format: str  # "png" | "jpeg" | "webp"
    quality: int | None = None  # JPEG / WebP quality (None: server.images.DEFAULT_QUALITY)
    guidance_interval: tuple[float, float] | None = None  # (sigma_lo, sigma_hi]
    init_image: np.ndarray | None = None  # (height, width, 3) uint8, already resized
    strength: float = 1.0
    control_image: np.ndarray | None = None  # (height, width, 3) uint8, already resized
    controlnet: str | None = None
    control_scale: float = 1.0
    classifier_scale: float = 0.0  # classifier guidance w_c; 0 = none
    classifier_labels: tuple[int, ...] | None = None  # one per classifier head; set iff classifier_scale > 0
    decoder: str = "full"  # "full": the model's VAE; "tiny": its distilled tiny decoder (LoadedModel.tiny_vae)
    preview: bool = False
    timeout_s: float = 300.0


@dataclass(frozen=True)
class Progress:
    """One model evaluation of a request done (optionally with a preview of x0)."""

    step: int  # model evaluations done
    total: int  # model evaluations needed
    preview_png: bytes | None = None


@dataclass
class GenerationResult:
    """A finished request: encoded images and what produced them."""

    id: str
    images: list[bytes]  # encoded in spec.output_format
    output_format: str
    seed: int
    model: str
    sampler: str
    steps: int
    guidance: float
    width: int
    height: int
    prompt_truncated: bool
    timings: dict[str, float] = field(default_factory=dict)  # queue_s, denoise_s, decode_s, encode_s, total_s


ProgressCallback = Callable[[Progress], None]


class EngineProtocol(Protocol):
    """The engine as the HTTP side sees it (server.engine.Engine implements it)."""

    @property
    def ready(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    def cards(self) -> list[ModelCard]: ...

    def start(self) -> None: ...

    def submit(
        self, spec: GenerationSpec, on_progress: ProgressCallback | None = None
    ) -> asyncio.Future[GenerationResult]: ...

    def cancel(self, request_id: str) -> bool: ...

    def begin_drain(self) -> None: ...

    def drain(self, timeout_s: float) -> bool: ...

    def stop(self) -> None: ...
