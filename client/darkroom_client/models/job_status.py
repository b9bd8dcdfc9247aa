from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.job_status_status import JobStatusStatus
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.error_body import ErrorBody
    from ..models.generate_response import GenerateResponse


T = TypeVar("T", bound="JobStatus")


@_attrs_define
class JobStatus:
    """
    Attributes:
        id (str):
        status (JobStatusStatus):
        step (int): Model evaluations done.
        total (int): Model evaluations the sampler needs.
        error (ErrorBody | None | Unset):
        result (GenerateResponse | None | Unset):
    """

    id: str
    status: JobStatusStatus
    step: int
    total: int
    error: ErrorBody | None | Unset = UNSET
    result: GenerateResponse | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.error_body import ErrorBody  # noqa: PLC0415
        from ..models.generate_response import GenerateResponse  # noqa: PLC0415

        id = self.id

        status = self.status.value

        step = self.step

        total = self.total

        error: dict[str, Any] | None | Unset
        if isinstance(self.error, Unset):
            error = UNSET
        elif isinstance(self.error, ErrorBody):
            error = self.error.to_dict()
        else:
            error = self.error

        result: dict[str, Any] | None | Unset
        if isinstance(self.result, Unset):
            result = UNSET
        elif isinstance(self.result, GenerateResponse):
            result = self.result.to_dict()
        else:
            result = self.result

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "status": status,
                "step": step,
                "total": total,
            }
        )
        if error is not UNSET:
            field_dict["error"] = error
        if result is not UNSET:
            field_dict["result"] = result

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.error_body import ErrorBody  # noqa: PLC0415
        from ..models.generate_response import GenerateResponse  # noqa: PLC0415

        d = dict(src_dict)
        id = d.pop("id")

        status = JobStatusStatus(d.pop("status"))

        step = d.pop("step")

        total = d.pop("total")

        def _parse_error(data: object) -> ErrorBody | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                error_type_0 = ErrorBody.from_dict(data)

                return error_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ErrorBody | None | Unset, data)

        error = _parse_error(d.pop("error", UNSET))

        def _parse_result(data: object) -> GenerateResponse | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                result_type_0 = GenerateResponse.from_dict(data)

                return result_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(GenerateResponse | None | Unset, data)

        result = _parse_result(d.pop("result", UNSET))

        job_status = cls(
            id=id,
            status=status,
            step=step,
            total=total,
            error=error,
            result=result,
        )

        job_status.additional_properties = d
        return job_status

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
