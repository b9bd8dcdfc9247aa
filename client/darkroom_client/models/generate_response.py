from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.generate_response_format import GenerateResponseFormat

if TYPE_CHECKING:
    from ..models.generation_metadata import GenerationMetadata


T = TypeVar("T", bound="GenerateResponse")


@_attrs_define
class GenerateResponse:
    """
    Attributes:
        format_ (GenerateResponseFormat):
        id (str):
        images (list[str]): Base64-encoded images, `num_images` of them.
        metadata (GenerationMetadata):
    """

    format_: GenerateResponseFormat
    id: str
    images: list[str]
    metadata: GenerationMetadata
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        format_ = self.format_.value

        id = self.id

        images = self.images

        metadata = self.metadata.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "format": format_,
                "id": id,
                "images": images,
                "metadata": metadata,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.generation_metadata import GenerationMetadata  # noqa: PLC0415

        d = dict(src_dict)
        format_ = GenerateResponseFormat(d.pop("format"))

        id = d.pop("id")

        images = cast(list[str], d.pop("images"))

        metadata = GenerationMetadata.from_dict(d.pop("metadata"))

        generate_response = cls(
            format_=format_,
            id=id,
            images=images,
            metadata=metadata,
        )

        generate_response.additional_properties = d
        return generate_response

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
