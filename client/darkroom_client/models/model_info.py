from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.model_info_decoders_item import ModelInfoDecodersItem
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.sampler_info import SamplerInfo


T = TypeVar("T", bound="ModelInfo")


@_attrs_define
class ModelInfo:
    """
    Attributes:
        controlnets (list[str]):
        default_guidance (float):
        default_height (int):
        default_sampler (str):
        default_steps (int):
        default_width (int):
        description (str):
        family (str):
        id (str):
        latent_factor (int):
        max_num_images (int):
        max_pixels (int):
        max_side (int):
        min_side (int):
        samplers (list[SamplerInfo]):
        text_conditioned (bool):
        decoders (list[ModelInfoDecodersItem] | Unset): What a request's 'decoder' may be for this model.
        num_classes (int | None | Unset): Class-conditional models: the prompt is a class id below this.
    """

    controlnets: list[str]
    default_guidance: float
    default_height: int
    default_sampler: str
    default_steps: int
    default_width: int
    description: str
    family: str
    id: str
    latent_factor: int
    max_num_images: int
    max_pixels: int
    max_side: int
    min_side: int
    samplers: list[SamplerInfo]
    text_conditioned: bool
    decoders: list[ModelInfoDecodersItem] | Unset = UNSET
    num_classes: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        controlnets = self.controlnets

        default_guidance = self.default_guidance

        default_height = self.default_height

        default_sampler = self.default_sampler

        default_steps = self.default_steps

        default_width = self.default_width

        description = self.description

        family = self.family

        id = self.id

        latent_factor = self.latent_factor

        max_num_images = self.max_num_images

        max_pixels = self.max_pixels

        max_side = self.max_side

        min_side = self.min_side

        samplers = []
        for samplers_item_data in self.samplers:
            samplers_item = samplers_item_data.to_dict()
            samplers.append(samplers_item)

        text_conditioned = self.text_conditioned

        decoders: list[str] | Unset = UNSET
        if not isinstance(self.decoders, Unset):
            decoders = []
            for decoders_item_data in self.decoders:
                decoders_item = decoders_item_data.value
                decoders.append(decoders_item)

        num_classes: int | None | Unset
        if isinstance(self.num_classes, Unset):
            num_classes = UNSET
        else:
            num_classes = self.num_classes

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "controlnets": controlnets,
                "default_guidance": default_guidance,
                "default_height": default_height,
                "default_sampler": default_sampler,
                "default_steps": default_steps,
                "default_width": default_width,
                "description": description,
                "family": family,
                "id": id,
                "latent_factor": latent_factor,
                "max_num_images": max_num_images,
                "max_pixels": max_pixels,
                "max_side": max_side,
                "min_side": min_side,
                "samplers": samplers,
                "text_conditioned": text_conditioned,
            }
        )
        if decoders is not UNSET:
            field_dict["decoders"] = decoders
        if num_classes is not UNSET:
            field_dict["num_classes"] = num_classes

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.sampler_info import SamplerInfo  # noqa: PLC0415

        d = dict(src_dict)
        controlnets = cast(list[str], d.pop("controlnets"))

        default_guidance = d.pop("default_guidance")

        default_height = d.pop("default_height")

        default_sampler = d.pop("default_sampler")

        default_steps = d.pop("default_steps")

        default_width = d.pop("default_width")

        description = d.pop("description")

        family = d.pop("family")

        id = d.pop("id")

        latent_factor = d.pop("latent_factor")

        max_num_images = d.pop("max_num_images")

        max_pixels = d.pop("max_pixels")

        max_side = d.pop("max_side")

        min_side = d.pop("min_side")

        samplers = []
        _samplers = d.pop("samplers")
        for samplers_item_data in _samplers:
            samplers_item = SamplerInfo.from_dict(samplers_item_data)

            samplers.append(samplers_item)

        text_conditioned = d.pop("text_conditioned")

        _decoders = d.pop("decoders", UNSET)
        decoders: list[ModelInfoDecodersItem] | Unset = UNSET
        if _decoders is not UNSET:
            decoders = []
            for decoders_item_data in _decoders:
                decoders_item = ModelInfoDecodersItem(decoders_item_data)

                decoders.append(decoders_item)

        def _parse_num_classes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        num_classes = _parse_num_classes(d.pop("num_classes", UNSET))

        model_info = cls(
            controlnets=controlnets,
            default_guidance=default_guidance,
            default_height=default_height,
            default_sampler=default_sampler,
            default_steps=default_steps,
            default_width=default_width,
            description=description,
            family=family,
            id=id,
            latent_factor=latent_factor,
            max_num_images=max_num_images,
            max_pixels=max_pixels,
            max_side=max_side,
            min_side=min_side,
            samplers=samplers,
            text_conditioned=text_conditioned,
            decoders=decoders,
            num_classes=num_classes,
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
