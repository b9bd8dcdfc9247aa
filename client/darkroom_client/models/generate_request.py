from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.generate_request_decoder import GenerateRequestDecoder
from ..models.generate_request_output_format import GenerateRequestOutputFormat
from ..types import UNSET, Unset

T = TypeVar("T", bound="GenerateRequest")


@_attrs_define
class GenerateRequest:
    """POST /generate and POST /v1/jobs: one prompt, `num_images` images.

    Attributes:
        prompt (str): What to draw.
        classifier_scale (float | Unset): Classifier guidance scale w_c (Dhariwal & Nichol 2021): x0 += w_c sigma^2 grad
            log p(labels | x), with the model's noisy-latent classifier and labels parsed from the prompt. 0 = none; > 0
            needs a model with a classifier and a prompt it can label. Default: 0.0.
        control_image (None | str | Unset): Base64 control image for a ControlNet.
        control_scale (float | Unset): ControlNet residual scale. Default: 1.0.
        controlnet (None | str | Unset): ControlNet name from GET /v1/models; default: the model's only one.
        decoder (GenerateRequestDecoder | Unset): full: the model's own VAE decoder. tiny (fast mode, models listing it
            in GET /v1/models): a distilled tiny decoder on the same latents, ~1/20 of the arithmetic at 512x512; the image
            is close but not the same. Default: GenerateRequestDecoder.FULL.
        guidance (float | None | Unset): Classifier-free guidance scale w (1 = none).
        guidance_interval (list[float] | None | Unset): [sigma_lo, sigma_hi]: guidance only where sigma_lo <= sigma <=
            sigma_hi (Kynkaanniemi et al. 2024); outside it the uncond pass is skipped.
        height (int | None | Unset): Pixels; a multiple of the model's latent factor.
        init_image (None | str | Unset): Base64 PNG/JPEG/WebP for img2img (SDEdit).
        model (None | str | Unset): Model id from GET /v1/models; default: the server's first model.
        negative_prompt (str | Unset): What to steer away from (the uncond rows). Default: ''.
        num_images (int | Unset): Images for this prompt (each its own latent row). Default: 1.
        output_format (GenerateRequestOutputFormat | Unset): png (lossless), jpeg or webp. On a GPU server jpeg is
            encoded on the GPU (nvJPEG): the fastest. Default: GenerateRequestOutputFormat.PNG.
        preview (bool | Unset): Jobs only: low-resolution previews in the event stream. Default: False.
        quality (int | None | Unset): JPEG / WebP quality; default 90. Ignored for png.
        sampler (None | str | Unset): Sampler name from GET /v1/models; default: the model's.
        seed (int | None | Unset): Random seed; drawn at random when absent and always returned.
        steps (int | None | Unset): Sampler steps; default: the model's.
        strength (float | Unset): img2img: fraction of the schedule re-noised (1 = ignore the image). Default: 0.8.
        width (int | None | Unset): Pixels; a multiple of the model's latent factor.
    """

    prompt: str
    classifier_scale: float | Unset = 0.0
    control_image: None | str | Unset = UNSET
    control_scale: float | Unset = 1.0
    controlnet: None | str | Unset = UNSET
    decoder: GenerateRequestDecoder | Unset = GenerateRequestDecoder.FULL
    guidance: float | None | Unset = UNSET
    guidance_interval: list[float] | None | Unset = UNSET
    height: int | None | Unset = UNSET
    init_image: None | str | Unset = UNSET
    model: None | str | Unset = UNSET
    negative_prompt: str | Unset = ""
    num_images: int | Unset = 1
    output_format: GenerateRequestOutputFormat | Unset = GenerateRequestOutputFormat.PNG
    preview: bool | Unset = False
    quality: int | None | Unset = UNSET
    sampler: None | str | Unset = UNSET
    seed: int | None | Unset = UNSET
    steps: int | None | Unset = UNSET
    strength: float | Unset = 0.8
    width: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        prompt = self.prompt

        classifier_scale = self.classifier_scale

        control_image: None | str | Unset
        if isinstance(self.control_image, Unset):
            control_image = UNSET
        else:
            control_image = self.control_image

        control_scale = self.control_scale

        controlnet: None | str | Unset
        if isinstance(self.controlnet, Unset):
            controlnet = UNSET
        else:
            controlnet = self.controlnet

        decoder: str | Unset = UNSET
        if not isinstance(self.decoder, Unset):
            decoder = self.decoder.value

        guidance: float | None | Unset
        if isinstance(self.guidance, Unset):
            guidance = UNSET
        else:
            guidance = self.guidance

        guidance_interval: list[float] | None | Unset
        if isinstance(self.guidance_interval, Unset):
            guidance_interval = UNSET
        elif isinstance(self.guidance_interval, list):
            guidance_interval = []
            for guidance_interval_type_0_item_data in self.guidance_interval:
                guidance_interval_type_0_item: float
                guidance_interval_type_0_item = guidance_interval_type_0_item_data
                guidance_interval.append(guidance_interval_type_0_item)

        else:
            guidance_interval = self.guidance_interval

        height: int | None | Unset
        if isinstance(self.height, Unset):
            height = UNSET
        else:
            height = self.height

        init_image: None | str | Unset
        if isinstance(self.init_image, Unset):
            init_image = UNSET
        else:
            init_image = self.init_image

        model: None | str | Unset
        if isinstance(self.model, Unset):
            model = UNSET
        else:
            model = self.model

        negative_prompt = self.negative_prompt

        num_images = self.num_images

        output_format: str | Unset = UNSET
        if not isinstance(self.output_format, Unset):
            output_format = self.output_format.value

        preview = self.preview

        quality: int | None | Unset
        if isinstance(self.quality, Unset):
            quality = UNSET
        else:
            quality = self.quality

        sampler: None | str | Unset
        if isinstance(self.sampler, Unset):
            sampler = UNSET
        else:
            sampler = self.sampler

        seed: int | None | Unset
        if isinstance(self.seed, Unset):
            seed = UNSET
        else:
            seed = self.seed

        steps: int | None | Unset
        if isinstance(self.steps, Unset):
            steps = UNSET
        else:
            steps = self.steps

        strength = self.strength

        width: int | None | Unset
        if isinstance(self.width, Unset):
            width = UNSET
        else:
            width = self.width

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "prompt": prompt,
            }
        )
        if classifier_scale is not UNSET:
            field_dict["classifier_scale"] = classifier_scale
        if control_image is not UNSET:
            field_dict["control_image"] = control_image
        if control_scale is not UNSET:
            field_dict["control_scale"] = control_scale
        if controlnet is not UNSET:
            field_dict["controlnet"] = controlnet
        if decoder is not UNSET:
            field_dict["decoder"] = decoder
        if guidance is not UNSET:
            field_dict["guidance"] = guidance
        if guidance_interval is not UNSET:
            field_dict["guidance_interval"] = guidance_interval
        if height is not UNSET:
            field_dict["height"] = height
        if init_image is not UNSET:
            field_dict["init_image"] = init_image
        if model is not UNSET:
            field_dict["model"] = model
        if negative_prompt is not UNSET:
            field_dict["negative_prompt"] = negative_prompt
        if num_images is not UNSET:
            field_dict["num_images"] = num_images
        if output_format is not UNSET:
            field_dict["output_format"] = output_format
        if preview is not UNSET:
            field_dict["preview"] = preview
        if quality is not UNSET:
            field_dict["quality"] = quality
        if sampler is not UNSET:
            field_dict["sampler"] = sampler
        if seed is not UNSET:
            field_dict["seed"] = seed
        if steps is not UNSET:
            field_dict["steps"] = steps
        if strength is not UNSET:
            field_dict["strength"] = strength
        if width is not UNSET:
            field_dict["width"] = width

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        prompt = d.pop("prompt")

        classifier_scale = d.pop("classifier_scale", UNSET)

        def _parse_control_image(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        control_image = _parse_control_image(d.pop("control_image", UNSET))

        control_scale = d.pop("control_scale", UNSET)

        def _parse_controlnet(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        controlnet = _parse_controlnet(d.pop("controlnet", UNSET))

        _decoder = d.pop("decoder", UNSET)
        decoder: GenerateRequestDecoder | Unset
        if isinstance(_decoder, Unset):
            decoder = UNSET
        else:
            decoder = GenerateRequestDecoder(_decoder)

        def _parse_guidance(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        guidance = _parse_guidance(d.pop("guidance", UNSET))

        def _parse_guidance_interval(data: object) -> list[float] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                guidance_interval_type_0 = []
                _guidance_interval_type_0 = data
                for guidance_interval_type_0_item_data in _guidance_interval_type_0:

                    def _parse_guidance_interval_type_0_item(data: object) -> float:
                        return cast(float, data)

                    guidance_interval_type_0_item = _parse_guidance_interval_type_0_item(
                        guidance_interval_type_0_item_data
                    )

                    guidance_interval_type_0.append(guidance_interval_type_0_item)

                return guidance_interval_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[float] | None | Unset, data)

        guidance_interval = _parse_guidance_interval(d.pop("guidance_interval", UNSET))

        def _parse_height(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        height = _parse_height(d.pop("height", UNSET))

        def _parse_init_image(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        init_image = _parse_init_image(d.pop("init_image", UNSET))

        def _parse_model(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        model = _parse_model(d.pop("model", UNSET))

        negative_prompt = d.pop("negative_prompt", UNSET)

        num_images = d.pop("num_images", UNSET)

        _output_format = d.pop("output_format", UNSET)
        output_format: GenerateRequestOutputFormat | Unset
        if isinstance(_output_format, Unset):
            output_format = UNSET
        else:
            output_format = GenerateRequestOutputFormat(_output_format)

        preview = d.pop("preview", UNSET)

        def _parse_quality(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        quality = _parse_quality(d.pop("quality", UNSET))

        def _parse_sampler(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        sampler = _parse_sampler(d.pop("sampler", UNSET))

        def _parse_seed(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        seed = _parse_seed(d.pop("seed", UNSET))

        def _parse_steps(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        steps = _parse_steps(d.pop("steps", UNSET))

        strength = d.pop("strength", UNSET)

        def _parse_width(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        width = _parse_width(d.pop("width", UNSET))

        generate_request = cls(
            prompt=prompt,
            classifier_scale=classifier_scale,
            control_image=control_image,
            control_scale=control_scale,
            controlnet=controlnet,
            decoder=decoder,
            guidance=guidance,
            guidance_interval=guidance_interval,
            height=height,
            init_image=init_image,
            model=model,
            negative_prompt=negative_prompt,
            num_images=num_images,
            output_format=output_format,
            preview=preview,
            quality=quality,
            sampler=sampler,
            seed=seed,
            steps=steps,
            strength=strength,
            width=width,
        )

        return generate_request
