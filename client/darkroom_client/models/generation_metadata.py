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
        seed (int):
        model (str):
        sampler (str):
        steps (int):
        guidance (float):
        width (int):
        height (int):
        num_images (int):
        prompt_truncated (bool): The prompt (or negative prompt) was longer than the text encoder's window.
        timings (Timings):
    """

    seed: int
    model: str
    sampler: str
    steps: int
    guidance: float
    width: int
    height: int
    num_images: int
    prompt_truncated: bool
    timings: Timings
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        seed = self.seed

        model = self.model

        sampler = self.sampler

        steps = self.steps

        guidance = self.guidance

        width = self.width

        height = self.height

        num_images = self.num_images

        prompt_truncated = self.prompt_truncated

        timings = self.timings.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "seed": seed,
                "model": model,
                "sampler": sampler,
                "steps": steps,
                "guidance": guidance,
                "width": width,
                "height": height,
                "num_images": num_images,
                "prompt_truncated": prompt_truncated,
                "timings": timings,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.timings import Timings  # noqa: PLC0415

        d = dict(src_dict)
        seed = d.pop("seed")

        model = d.pop("model")

        sampler = d.pop("sampler")

        steps = d.pop("steps")

        guidance = d.pop("guidance")

        width = d.pop("width")

        height = d.pop("height")

        num_images = d.pop("num_images")

        prompt_truncated = d.pop("prompt_truncated")

        timings = Timings.from_dict(d.pop("timings"))

        generation_metadata = cls(
            seed=seed,
            model=model,
            sampler=sampler,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            num_images=num_images,
            prompt_truncated=prompt_truncated,
            timings=timings,
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
