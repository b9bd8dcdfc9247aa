"""Request and response bodies of the HTTP API (pydantic); no torch here.

Bounds that hold for every model live in Field(...); bounds that depend on the model (size
multiple of the latent factor, pixel budget, the sampler's step range) are checked in
server.validation against the model's card before any model work.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OutputFormat = Literal["png", "jpeg", "webp"]
Decoder = Literal["full", "tiny"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]

MAX_PROMPT_CHARS = 4000
MAX_SEED = 2**63 - 1
MAX_CLASSIFIER_SCALE = 100.0  # a cap well past where the shift swamps x0 (about 30 on the bundled model)


class _Strict(BaseModel):
    # Unknown fields are typos worth naming; NaN / Infinity are never valid numbers here.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerateRequest(_Strict):
    """POST /generate and POST /v1/jobs: one prompt, `num_images` images."""

    prompt: str = Field(max_length=MAX_PROMPT_CHARS, description="What to draw.")
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS, description="What to steer away from (the uncond rows).")
    model: str | None = Field(default=None, description="Model id from GET /v1/models; default: the server's first model.")
    sampler: str | None = Field(default=None, description="Sampler name from GET /v1/models; default: the model's.")
    steps: int | None = Field(default=None, ge=1, le=1000, description="Sampler steps; default: the model's.")
    guidance: float | None = Field(default=None, ge=0.0, le=50.0, description="Classifier-free guidance scale w (1 = none).")
    guidance_interval: tuple[float, float] | None = Field(
        default=None,
        description="[sigma_lo, sigma_hi]: guidance only where sigma_lo <= sigma <= sigma_hi (Kynkaanniemi et al. 2024); "
        "outside it the uncond pass is skipped.",
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Random seed; drawn at random when absent and always returned.")
    width: int | None = Field(default=None, ge=8, le=8192, description="Pixels; a multiple of the model's latent factor.")
    height: int | None = Field(default=None, ge=8, le=8192, description="Pixels; a multiple of the model's latent factor.")
    num_images: int = Field(default=1, ge=1, le=64, description="Images for this prompt (each its own latent row).")
    output_format: OutputFormat = Field(
        default="png",
        description="png (lossless), jpeg or webp. On a GPU server jpeg is encoded on the GPU (nvJPEG): the fastest.",
    )
    quality: int | None = Field(default=None, ge=1, le=100, description="JPEG / WebP quality; default 90. Ignored for png.")
    init_image: str | None = Field(default=None, description="Base64 PNG/JPEG/WebP for img2img (SDEdit).")
    strength: float = Field(default=0.8, gt=0.0, le=1.0, description="img2img: fraction of the schedule re-noised (1 = ignore the image).")
    control_image: str | None = Field(default=None, description="Base64 control image for a ControlNet.")
    controlnet: str | None = Field(default=None, description="ControlNet name from GET /v1/models; default: the model's only one.")
    control_scale: float = Field(default=1.0, ge=0.0, le=5.0, description="ControlNet residual scale.")
    classifier_scale: float = Field(
        default=0.0,
        ge=0.0,
        le=MAX_CLASSIFIER_SCALE,
        description="Classifier guidance scale w_c (Dhariwal & Nichol 2021): x0 += w_c sigma^2 grad log p(labels | x), "
        "with the model's noisy-latent classifier and labels parsed from the prompt. 0 = none; > 0 needs a model "
        "with a classifier and a prompt it can label.",
    )
    decoder: Decoder = Field(
        default="full",
        description="full: the model's own VAE decoder. tiny (fast mode, models listing it in GET /v1/models): a distilled "
        "tiny decoder on the same latents, ~1/20 of the arithmetic at 512x512; the image is close but not the same.",
    )
    preview: bool = Field(default=False, description="Jobs only: low-resolution previews in the event stream.")


class Timings(BaseModel):
    queue_s: float = Field(description="Arrival until denoising started.")
    denoise_s: float = Field(description="Denoising (shared forward passes included).")
    decode_s: float = Field(description="VAE decode.")
    encode_s: float = Field(description="PNG/JPEG/WebP encoding.")
    total_s: float = Field(description="Arrival until the images were ready.")


class GenerationMetadata(BaseModel):
    seed: int
    model: str
    sampler: str
    steps: int
    guidance: float
    width: int
    height: int
    num_images: int
    prompt_truncated: bool = Field(description="The prompt (or negative prompt) was longer than the text encoder's window.")
    timings: Timings


class GenerateResponse(BaseModel):
    id: str
    format: OutputFormat
    images: list[str] = Field(description="Base64-encoded images, `num_images` of them.")
    metadata: GenerationMetadata


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class JobCreated(BaseModel):
    id: str
    status: JobState


class JobStatus(BaseModel):
    id: str
    status: JobState
    step: int = Field(description="Model evaluations done.")
    total: int = Field(description="Model evaluations the sampler needs.")
    result: GenerateResponse | None = None
    error: ErrorBody | None = None


class SamplerInfo(BaseModel):
    name: str
    min_steps: int
    max_steps: int
    description: str


class ModelInfo(BaseModel):
    id: str
    family: str
    description: str
    text_conditioned: bool
    samplers: list[SamplerInfo]
    controlnets: list[str]
    decoders: list[Decoder] = Field(default=["full"], description="What a request's 'decoder' may be for this model.")
    default_sampler: str
    default_steps: int
    default_guidance: float
    default_width: int
    default_height: int
    latent_factor: int
    min_side: int
    max_side: int
    max_pixels: int
    max_num_images: int
    num_classes: int | None = Field(default=None, description="Class-conditional models: the prompt is a class id below this.")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str


class OpenAIImagesRequest(BaseModel):
    """POST /v1/images/generations, the OpenAI images API shape."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    model: str | None = None
    n: int = Field(default=1, ge=1, le=64)
    size: str | None = Field(default=None, pattern=r"^[0-9]{1,5}x[0-9]{1,5}$", description="'WIDTHxHEIGHT', e.g. '512x512'.")
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: OutputFormat = "png"
    quality: str | None = Field(default=None, description="Accepted and ignored.")
    style: str | None = Field(default=None, description="Accepted and ignored.")
    user: str | None = Field(default=None, description="Accepted and ignored.")


class OpenAIImage(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
