from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.open_ai_images_request_output_format import (
    OpenAIImagesRequestOutputFormat,
)
from ..models.open_ai_images_request_response_format import (
    OpenAIImagesRequestResponseFormat,
)
from ..types import UNSET, Unset

T = TypeVar("T", bound="OpenAIImagesRequest")


@_attrs_define
class OpenAIImagesRequest:
    """POST /v1/images/generations, the OpenAI images API shape.

    Attributes:
        prompt (str):
        model (None | str | Unset):
        n (int | Unset):  Default: 1.
        output_format (OpenAIImagesRequestOutputFormat | Unset):  Default: OpenAIImagesRequestOutputFormat.PNG.
        quality (None | str | Unset): Accepted and ignored.
        response_format (OpenAIImagesRequestResponseFormat | Unset):  Default:
            OpenAIImagesRequestResponseFormat.B64_JSON.
        size (None | str | Unset): 'WIDTHxHEIGHT', e.g. '512x512'.
        style (None | str | Unset): Accepted and ignored.
        user (None | str | Unset): Accepted and ignored.
    """

    prompt: str
    model: None | str | Unset = UNSET
    n: int | Unset = 1
    output_format: OpenAIImagesRequestOutputFormat | Unset = OpenAIImagesRequestOutputFormat.PNG
    quality: None | str | Unset = UNSET
    response_format: OpenAIImagesRequestResponseFormat | Unset = (
        OpenAIImagesRequestResponseFormat.B64_JSON
    )
    size: None | str | Unset = UNSET
    style: None | str | Unset = UNSET
    user: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        prompt = self.prompt

        model: None | str | Unset
        if isinstance(self.model, Unset):
            model = UNSET
        else:
            model = self.model

        n = self.n

        output_format: str | Unset = UNSET
        if not isinstance(self.output_format, Unset):
            output_format = self.output_format.value

        quality: None | str | Unset
        if isinstance(self.quality, Unset):
            quality = UNSET
        else:
            quality = self.quality

        response_format: str | Unset = UNSET
        if not isinstance(self.response_format, Unset):
            response_format = self.response_format.value

        size: None | str | Unset
        if isinstance(self.size, Unset):
            size = UNSET
        else:
            size = self.size

        style: None | str | Unset
        if isinstance(self.style, Unset):
            style = UNSET
        else:
            style = self.style

        user: None | str | Unset
        if isinstance(self.user, Unset):
            user = UNSET
        else:
            user = self.user

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "prompt": prompt,
            }
        )
        if model is not UNSET:
            field_dict["model"] = model
        if n is not UNSET:
            field_dict["n"] = n
        if output_format is not UNSET:
            field_dict["output_format"] = output_format
        if quality is not UNSET:
            field_dict["quality"] = quality
        if response_format is not UNSET:
            field_dict["response_format"] = response_format
        if size is not UNSET:
            field_dict["size"] = size
        if style is not UNSET:
            field_dict["style"] = style
        if user is not UNSET:
            field_dict["user"] = user

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        prompt = d.pop("prompt")

        def _parse_model(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        model = _parse_model(d.pop("model", UNSET))

        n = d.pop("n", UNSET)

        _output_format = d.pop("output_format", UNSET)
        output_format: OpenAIImagesRequestOutputFormat | Unset
        if isinstance(_output_format, Unset):
            output_format = UNSET
        else:
            output_format = OpenAIImagesRequestOutputFormat(_output_format)

        def _parse_quality(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        quality = _parse_quality(d.pop("quality", UNSET))

        _response_format = d.pop("response_format", UNSET)
        response_format: OpenAIImagesRequestResponseFormat | Unset
        if isinstance(_response_format, Unset):
            response_format = UNSET
        else:
            response_format = OpenAIImagesRequestResponseFormat(_response_format)

        def _parse_size(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        size = _parse_size(d.pop("size", UNSET))

        def _parse_style(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        style = _parse_style(d.pop("style", UNSET))

        def _parse_user(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        user = _parse_user(d.pop("user", UNSET))

        open_ai_images_request = cls(
            prompt=prompt,
            model=model,
            n=n,
            output_format=output_format,
            quality=quality,
            response_format=response_format,
            size=size,
            style=style,
            user=user,
        )

        return open_ai_images_request
