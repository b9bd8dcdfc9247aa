"""A LoadedModel whose every output is known exactly, for engine and API tests.

- Text encoder: a prompt's embedding is a constant row whose value is a stable function of the
  prompt (so mu below differs per prompt); prompts over 40 characters count as truncated.
- Denoiser: data x0 ~ N(mu, s^2) elementwise with mu the mean of the row's text embedding, so
  E[x0 | x] = mu + s^2 / (s^2 + sigma^2) (x - mu) exactly (the analytic Gaussian denoiser).
  Every op is per row, so a row's output never depends on its batch neighbours.
- VAE: decode = sigmoid of the first three latent channels, upsampled by the latent factor.

Each part counts its calls and can be told to misbehave: block on a gate, raise on a poison
prompt, raise out-of-memory above a row count, or decode to NaN.
"""

from __future__ import annotations

import threading
import zlib

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning
from pipelines.model import FamilySpec, LoadedModel

FACTOR = 2
POISON = "poison"  # a prompt containing this makes the denoiser raise
DATA_STD = 0.5  # s

KNOWN_FAMILY = FamilySpec(
    name="known",
    latent_channels=4,
    latent_factor=FACTOR,
    vae_scaling_factor=1.0,
    prediction_type="sample",
    default_sampler="ddim",
    default_steps=4,
    default_guidance=3.0,
    default_width=16,
    default_height=16,
    min_side=4,
    max_side=64,
    max_pixels=64 * 64,
)


def prompt_value(prompt: str) -> float:
    """A stable value in [-1, 1) per prompt; the poison prompt maps to 7 exactly."""
    if POISON in prompt:
        return 7.0
    return (zlib.crc32(prompt.encode()) % 2000) / 1000.0 - 1.0


class KnownTextEncoder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, prompts: list[str]) -> tuple[Conditioning, list[bool]]:
        self.calls.append(list(prompts))
        values = torch.tensor([prompt_value(p) for p in prompts], dtype=torch.float32)
        embeddings = values.view(-1, 1, 1).expand(-1, 3, 8).clone()  # (B, 3, 8)
        return Conditioning(text_embeddings=embeddings), [len(p) > 40 for p in prompts]


class AnalyticDenoiser:
    """E[x0 | x] for x0 ~ N(mu, s^2), x = x0 + sigma * eps, in closed form."""

    sigma_min = 0.02
    sigma_max = 20.0

    def __init__(self) -> None:
        self.calls: list[int] = []  # rows per call (after CFG doubled the guided rows)
        self.shapes: list[tuple[int, ...]] = []  # x's shape per call
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None  # when set to an Event, each call waits for it
        self.oom_above_rows: int | None = None  # raise out-of-memory for calls with more rows
        self.entered = threading.Event()  # set when a call starts (tests wait on it)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=30), "test gate never opened"
        with self.lock:
            self.calls.append(int(x.shape[0]))
            self.shapes.append(tuple(x.shape))
        assert cond.text_embeddings is not None
        if self.oom_above_rows is not None and x.shape[0] > self.oom_above_rows:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        mu = cond.text_embeddings.mean(dim=(1, 2)).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        if bool((mu == 7.0).any()):
            raise RuntimeError("poisoned row")
        s2 = DATA_STD**2
        k = (s2 / (s2 + sigma.to(torch.float64) ** 2)).to(x.dtype).view(-1, 1, 1, 1)
        return mu + k * (x - mu)

    def prior_scale(self, sigma: float) -> float:
        return float((sigma**2 + DATA_STD**2) ** 0.5)

    def to_decoder_input(self, x: Tensor, sigma: float) -> Tensor:
        return x

    def sigmas(self, steps: int, spacing: str | None = None, *, final_sigma: float | None = None) -> Tensor:
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        sig = self.sigma_max * (self.sigma_min / self.sigma_max) ** ramp  # geometric, descending
        return torch.cat([sig, torch.full((1,), final_sigma or 0.0, dtype=torch.float64)])


class KnownVAE:
    def __init__(self) -> None:
        self.decode_calls: list[int] = []
        self.encode_calls = 0
        self.nan_decodes = 0  # this many decodes return NaN (then normal ones)
        self.fp32_decodes = 0

    def decode(self, latents: Tensor, *, force_fp32: bool = False) -> Tensor:
        self.decode_calls.append(int(latents.shape[0]))
        if force_fp32:
            self.fp32_decodes += 1
        images = torch.sigmoid(latents[:, :3].float())
        images = images.repeat_interleave(FACTOR, dim=2).repeat_interleave(FACTOR, dim=3)
        if self.nan_decodes > 0:
            self.nan_decodes -= 1
            return torch.full_like(images, float("nan"))
        return images

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.encode_calls += 1
        pooled = torch.nn.functional.avg_pool2d(images.float(), FACTOR)  # (B, 3, h, w)
        logits = torch.logit(pooled.clamp(0.01, 0.99))
        return torch.cat([logits, torch.zeros_like(logits[:, :1])], dim=1)  # (B, 4, h, w)


def known_model(model_id: str = "known") -> LoadedModel:
    return LoadedModel(
        id=model_id,
        family=KNOWN_FAMILY,
        text_encoder=KnownTextEncoder(),
        denoiser=AnalyticDenoiser(),
        vae=KnownVAE(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        description="known-output analytic test model",
    )
