"""Model-specific checks of a request, all before any model work; each error names its field."""

from __future__ import annotations

import math
import secrets
import uuid

from server.errors import InvalidRequest
from server.generation import GenerationSpec, ModelCard
from server.images import decode_base64_image
from server.schemas import MAX_SEED, GenerateRequest


def pick_card(cards: list[ModelCard], model: str | None, *, field: str = "model") -> ModelCard:
    """The card of `model`, or the first served model when None."""
    if not cards:
        raise InvalidRequest("no model is loaded", field=field)
    if model is None:
        return cards[0]
    for card in cards:
        if card.id == model:
            return card
    known = ", ".join(c.id for c in cards)
    raise InvalidRequest(f"unknown model '{model}'; served: {known}", field=field)


def check_size(card: ModelCard, width: int, height: int, *, width_field: str, height_field: str) -> None:
    """Sides within the model's limits, multiples of its latent factor, area within its pixel budget."""
    for value, name in ((width, width_field), (height, height_field)):
        if value % card.latent_factor:
            raise InvalidRequest(
                f"'{name}' must be a multiple of {card.latent_factor} for model '{card.id}', got {value}",
                field=name,
            )
        if not card.min_side <= value <= card.max_side:
            raise InvalidRequest(
                f"'{name}' must be between {card.min_side} and {card.max_side} for model '{card.id}', got {value}",
                field=name,
            )
    if width * height > card.max_pixels:
        raise InvalidRequest(
            f"{width}x{height} is over model '{card.id}'s budget of {card.max_pixels} pixels",
            field=width_field,
        )


def _classifier_labels(card: ModelCard, req: GenerateRequest) -> tuple[int, ...]:
    """The classifier labels of the request's prompt; 422 on `classifier_scale` when there are none."""
    if card.classifier_labels is None:
        raise InvalidRequest(
            f"model '{card.id}' has no classifier for classifier guidance; 'classifier_scale' must be 0",
            field="classifier_scale",
        )
    try:
        return card.classifier_labels(req.prompt)
    except ValueError as e:
        raise InvalidRequest(
            f"'classifier_scale' > 0 needs a prompt model '{card.id}'s classifier can label: {e}",
            field="classifier_scale",
        ) from None


def resolve(req: GenerateRequest, cards: list[ModelCard], *, timeout_s: float, max_num_images: int) -> GenerationSpec:
    """GenerateRequest -> GenerationSpec with the model's defaults; raises InvalidRequest naming the field."""
    card = pick_card(cards, req.model)
    sampler_name = req.sampler or card.default_sampler
    sampler = card.sampler(sampler_name)
    if sampler is None:
        known = ", ".join(s.name for s in card.samplers)
        raise InvalidRequest(f"unknown sampler '{sampler_name}' for model '{card.id}'; known: {known}", field="sampler")
    steps = req.steps if req.steps is not None else max(sampler.min_steps, min(card.default_steps, sampler.max_steps))
    if not sampler.min_steps <= steps <= sampler.max_steps:
        raise InvalidRequest(
            f"'steps' must be between {sampler.min_steps} and {sampler.max_steps} for sampler '{sampler.name}', got {steps}",
            field="steps",
        )
    guidance = req.guidance if req.guidance is not None else card.default_guidance
    if not card.text_conditioned:
        classes = card.num_classes or 0
        label = req.prompt.strip()
        if not (label.isdigit() and int(label) < classes):
            raise InvalidRequest(
                f"model '{card.id}' is class-conditional: 'prompt' must be a class id in [0, {classes})",
                field="prompt",
            )
    width = req.width if req.width is not None else card.default_width
    height = req.height if req.height is not None else card.default_height
    check_size(card, width, height, width_field="width", height_field="height")
    limit = min(card.max_num_images, max_num_images)
    if req.num_images > limit:
        raise InvalidRequest(f"'num_images' must be at most {limit}, got {req.num_images}", field="num_images")
    interval = req.guidance_interval
    if interval is not None:
        lo, hi = interval
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise InvalidRequest(
                "'guidance_interval' must be [sigma_lo, sigma_hi] with 0 <= sigma_lo < sigma_hi",
                field="guidance_interval",
            )
    init = None
    if req.init_image is not None:
        if int(steps * req.strength) < 1:
            raise InvalidRequest(
                f"'strength' x 'steps' must be at least one step, got {req.strength} x {steps}", field="strength"
            )
        init = decode_base64_image(req.init_image, field="init_image", width=width, height=height)
    control = None
    controlnet = req.controlnet
    if req.control_image is not None:
        if not card.controlnets:
            raise InvalidRequest(f"model '{card.id}' has no ControlNet", field="control_image")
        if controlnet is None:
            if len(card.controlnets) > 1:
                raise InvalidRequest(
                    f"model '{card.id}' has several ControlNets ({', '.join(card.controlnets)}); name one",
                    field="controlnet",
                )
            controlnet = card.controlnets[0]
        control = decode_base64_image(req.control_image, field="control_image", width=width, height=height)
    if controlnet is not None and controlnet not in card.controlnets:
        raise InvalidRequest(f"unknown ControlNet '{controlnet}' for model '{card.id}'", field="controlnet")
    if controlnet is not None and control is None:
        raise InvalidRequest("'controlnet' needs a 'control_image'", field="control_image")
    classifier_labels = _classifier_labels(card, req) if req.classifier_scale > 0 else None
    if req.decoder not in card.decoders:
        raise InvalidRequest(
            f"model '{card.id}' has no {req.decoder} decoder; 'decoder' must be one of: {', '.join(card.decoders)}",
            field="decoder",
        )
    seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED)
    return GenerationSpec(
        id=uuid.uuid4().hex,
        model=card.id,
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        sampler=sampler.name,
        steps=steps,
        guidance=float(guidance),
        seed=seed,
        width=width,
        height=height,
        num_images=req.num_images,
        output_format=req.output_format,
        quality=req.quality,
        guidance_interval=interval,
        init_image=init,
        strength=req.strength if init is not None else 1.0,
        control_image=control,
        controlnet=controlnet,
        control_scale=req.control_scale,
        classifier_scale=req.classifier_scale,
        classifier_labels=classifier_labels,
        decoder=req.decoder,
        preview=req.preview,
        timeout_s=timeout_s,
    )
