from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="Timings")


@_attrs_define
class Timings:
    """
    Attributes:
        decode_s (float): VAE decode.
        denoise_s (float): Denoising (shared forward passes included).
        encode_s (float): PNG/JPEG/WebP encoding.
        queue_s (float): Arrival until denoising started.
        total_s (float): Arrival until the images were ready.
    """

    decode_s: float
    denoise_s: float
    encode_s: float
    queue_s: float
    total_s: float
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        decode_s = self.decode_s

        denoise_s = self.denoise_s

        encode_s = self.encode_s

        queue_s = self.queue_s

        total_s = self.total_s

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "decode_s": decode_s,
                "denoise_s": denoise_s,
                "encode_s": encode_s,
                "queue_s": queue_s,
                "total_s": total_s,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        decode_s = d.pop("decode_s")

        denoise_s = d.pop("denoise_s")

        encode_s = d.pop("encode_s")

        queue_s = d.pop("queue_s")

        total_s = d.pop("total_s")

        timings = cls(
            decode_s=decode_s,
            denoise_s=denoise_s,
            encode_s=encode_s,
            queue_s=queue_s,
            total_s=total_s,
        )

        timings.additional_properties = d
        return timings

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
