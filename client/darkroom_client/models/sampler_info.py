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
        name (str):
        min_steps (int):
        max_steps (int):
        description (str):
    """

    name: str
    min_steps: int
    max_steps: int
    description: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        name = self.name

        min_steps = self.min_steps

        max_steps = self.max_steps

        description = self.description

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "name": name,
                "min_steps": min_steps,
                "max_steps": max_steps,
                "description": description,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        name = d.pop("name")

        min_steps = d.pop("min_steps")

        max_steps = d.pop("max_steps")

        description = d.pop("description")

        sampler_info = cls(
            name=name,
            min_steps=min_steps,
            max_steps=max_steps,
            description=description,
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
