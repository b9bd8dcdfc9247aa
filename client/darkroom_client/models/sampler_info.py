from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="SamplerInfo")


@_attrs_define
class SamplerInfo:
    """
    Attributes:
        description (str):
        max_steps (int):
        min_steps (int):
        name (str):
    """

    description: str
    max_steps: int
    min_steps: int
    name: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        description = self.description

        max_steps = self.max_steps

        min_steps = self.min_steps

        name = self.name

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "description": description,
                "max_steps": max_steps,
                "min_steps": min_steps,
                "name": name,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        description = d.pop("description")

        max_steps = d.pop("max_steps")

        min_steps = d.pop("min_steps")

        name = d.pop("name")

        sampler_info = cls(
            description=description,
            max_steps=max_steps,
            min_steps=min_steps,
            name=name,
        )

        sampler_info.additional_properties = d
        return sampler_info

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
