"""One request, alone: prompt -> images, through the same denoiser, guidance and samplers the engine uses.

    x_T = noise * prior_scale(sigma_0)              noise ~ N(0, I) from torch.Generator(seed) on CPU
    x0  = cfg(denoiser)(x, sigma, cond/uncond)      one forward pass per model evaluation
    x   = sampler(x, sigmas)                        pipelines.samplers, randomness from the same generator
    images = vae.decode(denoiser.to_decoder_input(x, sigma_final))

img2img is SDEdit (Meng et al. 2022, sec. 3): start at sigma_s = sigmas[t_start] with
x = x0_init + sigma_s * eps, where t_start skips the first (1 - strength) of the steps as
diffusers' img2img pipelines do. Guidance w <= 1 runs no uncond pass (diffusers' convention:
guidance_scale 0 or 1 means "off", as SD-Turbo uses it).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning, GuidedConditioning, to_device
from pipelines.guidance import (
    NoisyClassifier,
    cfg,
    classifier_guidance,
    guided_rows,
    in_guidance_interval,
)
from pipelines.model import LoadedModel
from pipelines.samplers import make_sampler, run, sampler_spec, seeded_noise, validate_steps
from pipelines.text import encode_with_negative
from pipelines.vae import has_nan

MAX_IMAGES = 16
MAX_SEED = 2**63 - 1


class NaNOutputError(RuntimeError):
    """The decoded image held NaN or inf even after the fp32 VAE retry."""


def _check_int(param: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{param} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_number(param: str, value: object, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{param} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{param} must be in [{lo}, {hi}], got {value!r}")
    return float(value)


def check_size(model: LoadedModel, width: int, height: int) -> None:
    """Raise ValueError naming `width` or `height` if the size does not suit the model."""
    spec = model.family
    for param, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{param} must be an integer, got {value!r}")  # noqa: TRY004 (a 4xx)
        if value % spec.latent_factor:
            raise ValueError(
                f"{param} must be divisible by {spec.latent_factor} (the latent factor), got {value}"
            )
        if not spec.min_side <= value <= spec.max_side:
            raise ValueError(f"{param} must be in [{spec.min_side}, {spec.max_side}], got {value}")
    if width * height > spec.max_pixels:
        raise ValueError(f"width x height must be <= {spec.max_pixels} pixels, got {width} x {height}")


def _image_batch(param: str, image: Tensor, width: int | None, height: int | None) -> Tensor:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (1, 3, H, W), checked against the requested size."""
    if not isinstance(image, Tensor) or image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"{param} must be a (3, H, W) or (1, 3, H, W) tensor")
    image = image if image.dim() == 4 else image[None]
    if image.shape[0] != 1:
        raise ValueError(f"{param} must hold one image, got {image.shape[0]}")
    if not bool(torch.isfinite(image).all()) or float(image.min()) < 0 or float(image.max()) > 1:
        raise ValueError(f"{param} values must be finite and in [0, 1]")
    if (width is not None and image.shape[-1] != width) or (height is not None and image.shape[-2] != height):
        raise ValueError(f"{param} is {image.shape[-1]}x{image.shape[-2]} but the requested size is {width}x{height}")
    return image.float()


def sampling_sigmas(model: LoadedModel, sampler: str, steps: int) -> Tensor:
    """The sampler's spacing on the model's schedule; "leading" defers to the model's own spacing.

    DDIM stops where the model's DDIM config does (sigma(t = 0) when set_alpha_to_one is False),
    every other sampler at sigma = 0, as their diffusers counterparts do.
    """
    spec = sampler_spec(sampler)
    spacing = spec.default_spacing
    if spacing == "leading":
        spacing = getattr(model.denoiser, "default_spacing", spacing)
    final_sigma = None if spec.name == "ddim" else 0.0
    return model.denoiser.sigmas(steps, spacing, final_sigma=final_sigma)  # type: ignore[call-arg]


def _conditioning(
    model: LoadedModel, prompt: str, negative_prompt: str, size: tuple[int, int]
) -> tuple[Conditioning, Conditioning, bool]:
    """One cond row and one uncond row for the prompt; class-conditional models read a label."""
    if model.text_encoder is None:
        null_class = getattr(model.denoiser, "null_class", None)
        try:
            label = int(prompt)
        except ValueError:
            raise ValueError(f"prompt must be a class id for class-conditional model {model.id!r}, got text") from None
        if null_class is None or not 0 <= label < null_class:
            raise ValueError(f"prompt must be a class id in [0, {null_class}), got {label}")
        cond = Conditioning(class_labels=torch.tensor([label]))
        return cond, Conditioning(class_labels=torch.tensor([null_class])), False
    cond, uncond, truncated = encode_with_negative(
        model.text_encoder,  # type: ignore[arg-type]
        [prompt],
        [negative_prompt],
        size=size,
    )
    return cond, uncond, truncated[0]


def text_to_image(
    model: LoadedModel,
    prompt: str,
    *,
    negative_prompt: str = "",
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    width: int | None = None,
    height: int | None = None,
    num_images: int = 1,
    init_image: Tensor | None = None,
    strength: float | None = None,
    control_image: Tensor | None = None,
    control_scale: float = 1.0,
    guidance_interval: tuple[float, float] | None = None,
    eta: float | None = None,
    classifier: NoisyClassifier | None = None,
    classifier_scale: float = 0.0,
    classifier_labels: list[int] | None = None,
) -> tuple[Tensor, dict[str, object]]:
    """Generate `num_images` images (N, 3, H, W) in [0, 1] and their metadata; bad input raises ValueError naming it."""
    spec = model.family
    if not isinstance(prompt, str):
        raise ValueError("prompt must be a string")  # noqa: TRY004 (bad input, like every other)
    if not isinstance(negative_prompt, str):
        raise ValueError("negative_prompt must be a string")  # noqa: TRY004
    sampler = spec.default_sampler if sampler is None else sampler
    sampler_spec(sampler)  # unknown sampler -> ValueError naming `sampler`
    steps = spec.default_steps if steps is None else steps
    validate_steps(sampler, steps)
    guidance = _check_number("guidance", spec.default_guidance if guidance is None else guidance, 0.0, 100.0)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    num_images = _check_int("num_images", num_images, 1, MAX_IMAGES)
    control_scale = _check_number("control_scale", control_scale, 0.0, 10.0)
    classifier_scale = _check_number("classifier_scale", classifier_scale, 0.0, 1000.0)
    if classifier_scale > 0 and (classifier is None or not classifier_labels):
        raise ValueError("classifier_scale > 0 needs a classifier and classifier_labels (one per head)")
    if guidance_interval is not None:
        lo = _check_number("guidance_interval", guidance_interval[0], 0.0)
        _check_number("guidance_interval", guidance_interval[1], lo)

    init = None
    if init_image is not None:
        init = _image_batch("init_image", init_image, width, height)
        height, width = int(init.shape[-2]), int(init.shape[-1])
        strength = _check_number("strength", 0.8 if strength is None else strength, 0.0, 1.0)
    elif strength is not None:
        raise ValueError("strength needs an init_image")
    width = spec.default_width if width is None else width
    height = spec.default_height if height is None else height
    check_size(model, width, height)
    control = None
    if control_image is not None:
        if not model.controlnets:
            raise ValueError(f"control_image given but model {model.id!r} has no ControlNet")
        control = _image_batch("control_image", control_image, width, height)

    sigmas = sampling_sigmas(model, sampler, steps)
    if init is not None:
        assert strength is not None
        used = min(int(steps * strength), steps)  # steps actually run, diffusers' get_timesteps
        if used < 1:
            raise ValueError(f"strength x steps must be >= 1 step, got {strength} x {steps}")
        sigmas = sigmas[steps - used :]

    cond, uncond, truncated = _conditioning(model, prompt, negative_prompt, (height, width))
    if control is not None:
        extra = {"control_image": control, "control_scale": torch.tensor([control_scale])}
        cond, uncond = replace(cond, **extra), replace(uncond, **extra)
    cond, uncond = cond.repeat(num_images), uncond.repeat(num_images)
    cond, uncond = cond.to(model.device), uncond.to(model.device)
    effective_w = max(1.0, guidance)
    denoiser = model.denoiser
    if getattr(denoiser, "embeds_guidance", False):
        # guidance-distilled LCM UNets take w as an input embedding (Luo et al. 2023, sec. 4.1),
        # as diffusers' LCM pipeline does; no uncond pass
        denoiser = denoiser.with_lcm_guidance(guidance)  # type: ignore[attr-defined]
        effective_w = 1.0

    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (num_images, spec.latent_channels, height // spec.latent_factor, width // spec.latent_factor)
    if init is not None:
        x0_init = model.vae.encode(init.to(model.device), generator=generator).float()  # (1, C, h, w)
        eps = to_device(torch.randn(shape, generator=generator, dtype=torch.float32), model.device)
        x = x0_init + float(sigmas[0]) * eps
    else:
        eps = to_device(torch.randn(shape, generator=generator, dtype=torch.float32), model.device)
        x = eps * denoiser.prior_scale(float(sigmas[0]))

    guided = cfg(denoiser)
    classifier_rows: dict[str, Tensor] = {}
    if classifier is not None and classifier_scale > 0 and classifier_labels:
        guided = classifier_guidance(guided, classifier)
        classifier_rows = {
            "classifier_scale": torch.full((num_images,), classifier_scale),
            "classifier_labels": torch.tensor([classifier_labels], dtype=torch.long).repeat(num_images, 1),
        }
    scale = torch.full((num_images,), effective_w)
    evaluations = 0
    uncond_rows = 0

    def denoise(x_now: Tensor, sigma_rows: Tensor) -> Tensor:
        nonlocal evaluations, uncond_rows
        guide = None
        if guidance_interval is not None:
            guide = in_guidance_interval(sigma_rows.cpu(), guidance_interval[0], guidance_interval[1])
        gc = GuidedConditioning(cond=cond, uncond=uncond, guidance_scale=scale, guide=guide, **classifier_rows)
        evaluations += 1
        uncond_rows += int(guided_rows(gc).sum())
        return guided(x_now, sigma_rows, gc)

    noise = seeded_noise(x, generator)
    x = run(make_sampler(sampler, x, sigmas, noise, eta=eta), denoise)
    latents = denoiser.to_decoder_input(x, float(sigmas[-1]))
    images = model.vae.decode(latents)
    bad = has_nan(images)
    if bool(bad.any()):
        images = model.vae.decode(latents, force_fp32=True)  # type: ignore[call-arg]
        if bool(has_nan(images).any()):
            raise NaNOutputError("the decoded image holds NaN or inf values (nan_output)")

    metadata: dict[str, object] = {
        "model": model.id,
        "seed": seed,
        "sampler": sampler,
        "steps": steps,
        "guidance": guidance,
        "width": width,
        "height": height,
        "num_images": num_images,
        "prompt_truncated": truncated,
        "model_evaluations": evaluations,
        "uncond_rows": uncond_rows,
        "strength": strength,
        "classifier_scale": classifier_scale,
        "description": model.description,
    }
    return images.cpu(), metadata
