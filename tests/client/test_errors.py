"""Error answers become typed exceptions carrying status, code, field and Retry-After."""

from __future__ import annotations

import json

import httpx
import pytest
from darkroom_client_ext import (
    Darkroom,
    DarkroomError,
    NotFound,
    Overloaded,
    ServerError,
    Unauthorized,
    ValidationError,
)
from darkroom_client_ext.errors import error_from_response


def _error(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "field": field}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, Unauthorized), (404, NotFound), (422, ValidationError), (503, Overloaded), (500, ServerError), (502, ServerError), (418, DarkroomError)],
)
def test_status_picks_the_class(status: int, cls: type[DarkroomError]) -> None:
    error = error_from_response(_error(status, "some_code", "why"))
    assert type(error) is cls
    assert (error.status_code, error.code, error.message) == (status, "some_code", "why")


def test_darkroom_body_field_and_retry_after() -> None:
    error = error_from_response(_error(503, "queue_full", "the queue is full", headers={"Retry-After": "2"}))
    assert isinstance(error, Overloaded)
    assert error.retry_after_s == 2.0 and error.field is None
    error = error_from_response(_error(422, "invalid_request", "steps must be >= 1", field="steps"))
    assert isinstance(error, ValidationError)
    assert error.field == "steps"
    assert str(error) == "422 invalid_request: steps must be >= 1 (field 'steps')"


def test_fastapi_default_validation_body_names_the_field() -> None:
    body = {"detail": [{"loc": ["body", "guidance_interval", 0], "msg": "Input should be a valid number", "type": "float_parsing"}]}
    error = error_from_response(httpx.Response(422, content=json.dumps(body).encode()))
    assert isinstance(error, ValidationError)
    assert (error.field, error.code, error.message) == ("guidance_interval.0", "invalid_request", "Input should be a valid number")


def test_non_json_body() -> None:
    error = error_from_response(httpx.Response(502, text="upstream down"))
    assert isinstance(error, ServerError)
    assert (error.code, error.message, error.field) == ("http_502", "upstream down", None)


def test_client_raises_typed_error_and_sends_bearer_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _error(422, "invalid_request", "width must be a multiple of 8", field="width")

    with (
        Darkroom("http://test", api_key="k1", transport=httpx.MockTransport(handler)) as client,
        pytest.raises(ValidationError) as info,
    ):
        client.generate("a red circle", width=65)
    assert info.value.field == "width" and info.value.status_code == 422
    assert seen[0].headers["authorization"] == "Bearer k1"
    assert seen[0].headers["accept"] == "image/png"
    body = json.loads(seen[0].content)
    assert (body["prompt"], body["width"], body["num_images"]) == ("a red circle", 65, 1)
    # Parameters left None are omitted, not sent as null: the model's defaults apply.
    assert not {"model", "sampler", "steps", "guidance", "seed", "height"} & body.keys()
