from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.timings import Timings


T = TypeVar("T", bound="GenerationMetadata")


@_attrs_define
class GenerationMetadata:
    """
    Attributes:
        guidance (float):
        height (int):
        model (str):
        num_images (int):
        prompt_truncated (bool): The prompt (or negative prompt) was longer than the text encoder's window.
        sampler (str):
        seed (int):
        steps (int):
        timings (Timings):
        width (int):
    """

    guidance: float
    height: int
    model: str
    num_images: int
    prompt_truncated: bool
    sampler: str
    seed: int
    steps: int
    timings: Timings
    width: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        guidance = self.guidance

        height = self.height

        model = self.model

        num_images = self.num_images

        prompt_truncated = self.prompt_truncated

        sampler = self.sampler

        seed = self.seed

        steps = self.steps

        timings = self.timings.to_dict()

        width = self.width

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "guidance": guidance,
                "height": height,
                "model": model,
                "num_images": num_images,
                "prompt_truncated": prompt_truncated,
                "sampler": sampler,
                "seed": seed,
                "steps": steps,
                "timings": timings,
                "width": width,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.timings import Timings  # noqa: PLC0415

        d = dict(src_dict)
        guidance = d.pop("guidance")

        height = d.pop("height")

        model = d.pop("model")

        num_images = d.pop("num_images")

        prompt_truncated = d.pop("prompt_truncated")

        sampler = d.pop("sampler")

        seed = d.pop("seed")

        steps = d.pop("steps")

        timings = Timings.from_dict(d.pop("timings"))

        width = d.pop("width")

        generation_metadata = cls(
            guidance=guidance,
            height=height,
            model=model,
            num_images=num_images,
            prompt_truncated=prompt_truncated,
            sampler=sampler,
            seed=seed,
            steps=steps,
            timings=timings,
            width=width,
        )

        generation_metadata.additional_properties = d
        return generation_metadata

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
