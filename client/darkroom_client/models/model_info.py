from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.sampler_info import SamplerInfo


T = TypeVar("T", bound="ModelInfo")


@_attrs_define
class ModelInfo:
    """
    Attributes:
        id (str):
        family (str):
        description (str):
        text_conditioned (bool):
        samplers (list[SamplerInfo]):
        controlnets (list[str]):
        default_sampler (str):
        default_steps (int):
        default_guidance (float):
        default_width (int):
        default_height (int):
        latent_factor (int):
        min_side (int):
        max_side (int):
        max_pixels (int):
        max_num_images (int):
    """

    id: str
    family: str
    description: str
    text_conditioned: bool
    samplers: list[SamplerInfo]
    controlnets: list[str]
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
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = self.id

        family = self.family

        description = self.description

        text_conditioned = self.text_conditioned

        samplers = []
        for samplers_item_data in self.samplers:
            samplers_item = samplers_item_data.to_dict()
            samplers.append(samplers_item)

        controlnets = self.controlnets

        default_sampler = self.default_sampler

        default_steps = self.default_steps

        default_guidance = self.default_guidance

        default_width = self.default_width

        default_height = self.default_height

        latent_factor = self.latent_factor

        min_side = self.min_side

        max_side = self.max_side

        max_pixels = self.max_pixels

        max_num_images = self.max_num_images

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "family": family,
                "description": description,
                "text_conditioned": text_conditioned,
                "samplers": samplers,
                "controlnets": controlnets,
                "default_sampler": default_sampler,
                "default_steps": default_steps,
                "default_guidance": default_guidance,
                "default_width": default_width,
                "default_height": default_height,
                "latent_factor": latent_factor,
                "min_side": min_side,
                "max_side": max_side,
                "max_pixels": max_pixels,
                "max_num_images": max_num_images,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.sampler_info import SamplerInfo  # noqa: PLC0415

        d = dict(src_dict)
        id = d.pop("id")

        family = d.pop("family")

        description = d.pop("description")

        text_conditioned = d.pop("text_conditioned")

        samplers = []
        _samplers = d.pop("samplers")
        for samplers_item_data in _samplers:
            samplers_item = SamplerInfo.from_dict(samplers_item_data)

            samplers.append(samplers_item)

        controlnets = cast(list[str], d.pop("controlnets"))

        default_sampler = d.pop("default_sampler")

        default_steps = d.pop("default_steps")

        default_guidance = d.pop("default_guidance")

        default_width = d.pop("default_width")

        default_height = d.pop("default_height")

        latent_factor = d.pop("latent_factor")

        min_side = d.pop("min_side")

        max_side = d.pop("max_side")

        max_pixels = d.pop("max_pixels")

        max_num_images = d.pop("max_num_images")

        model_info = cls(
            id=id,
            family=family,
            description=description,
            text_conditioned=text_conditioned,
            samplers=samplers,
            controlnets=controlnets,
            default_sampler=default_sampler,
            default_steps=default_steps,
            default_guidance=default_guidance,
            default_width=default_width,
            default_height=default_height,
            latent_factor=latent_factor,
            min_side=min_side,
            max_side=max_side,
            max_pixels=max_pixels,
            max_num_images=max_num_images,
        )

        model_info.additional_properties = d
        return model_info

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
