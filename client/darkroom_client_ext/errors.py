"""Typed exceptions for error answers of the Darkroom API.

The server answers every error with `{"error": {"code": ..., "message": ..., "field": ...}}`
(server/errors.py); `error_from_response` turns such an answer into the exception class of
its HTTP status, carrying the status code, the machine-readable code and the request field.
"""

from __future__ import annotations

import json

import httpx


class DarkroomError(Exception):
    """An error answer from the server (any non-2xx status)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str,
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code  # the HTTP status, e.g. 422
        self.code = code  # machine-readable, e.g. "invalid_request", "queue_full"
        self.field = field  # the request field at fault ("steps", "width"), when there is one
        self.retry_after_s = retry_after_s  # from the Retry-After header (503), when given

    def __str__(self) -> str:
        where = f" (field {self.field!r})" if self.field else ""
        return f"{self.status_code} {self.code}: {self.message}{where}"


class BadRequest(DarkroomError):
    """400: the body is not valid JSON or not the expected shape."""


class Unauthorized(DarkroomError):
    """401: a bearer API key is required, or the one sent is not accepted."""


class NotFound(DarkroomError):
    """404: no such job, model or route."""


class NotAcceptable(DarkroomError):
    """406: the Accept header asks for a format the server cannot produce."""


class Conflict(DarkroomError):
    """409: the job was cancelled, or is not in a state that allows the request."""


class PayloadTooLarge(DarkroomError):
    """413: the request body is over the server's limit."""


class ValidationError(DarkroomError):
    """422: a value is out of range or unsupported; `field` names it."""


class Overloaded(DarkroomError):
    """503: queue full, draining or out of memory; retry after `retry_after_s`."""


class DeadlineExceeded(DarkroomError):
    """504: the request did not finish within the server's deadline."""


class ServerError(DarkroomError):
    """Any other 5xx: the model failed on this request (e.g. code "nan_output")."""


class StreamError(DarkroomError):
    """A job's event stream ended without the job's result, error or cancellation."""


_BY_STATUS: dict[int, type[DarkroomError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    503: Overloaded,
    504: DeadlineExceeded,
}


# The HTTP status of each server error code (server/errors.py), for errors that arrive inside a
# job's event stream (whose own status is 200).
STATUS_OF_CODE: dict[str, int] = {
    "invalid_request": 422,
    "unauthorized": 401,
    "not_found": 404,
    "not_acceptable": 406,
    "payload_too_large": 413,
    "cancelled": 409,
    "unavailable": 503,
    "queue_full": 503,
    "draining": 503,
    "out_of_memory": 503,
    "deadline_exceeded": 504,
    "model_error": 500,
    "nan_output": 500,
}


def error_class(status_code: int) -> type[DarkroomError]:
    """The exception class for an HTTP status code."""
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    return ServerError if status_code >= 500 else DarkroomError


def _field_from_loc(loc: object) -> str | None:
    """FastAPI's `loc` (["body", "steps"]) as a dotted field name ("steps")."""
    if not isinstance(loc, list):
        return None
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def error_from_response(response: httpx.Response) -> DarkroomError:
    """The typed exception for a non-2xx response; the response body must already be read."""
    status = response.status_code
    code = f"http_{status}"
    message = response.reason_phrase or "error"
    field: str | None = None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        # Darkroom's own error body.
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        field = error.get("field") if isinstance(error.get("field"), str) else None
    elif isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"]:
        # FastAPI's default validation body, should a route answer with it.
        first = body["detail"][0]
        if isinstance(first, dict):
            code = "invalid_request"
            message = str(first.get("msg") or message)
            field = _field_from_loc(first.get("loc"))
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]
    elif response.content and body is None:
        message = response.text[:500]
    retry_after = response.headers.get("retry-after")
    retry_after_s = float(retry_after) if retry_after and retry_after.isdigit() else None
    return error_class(status)(
        message, status_code=status, code=code, field=field, retry_after_s=retry_after_s
    )


def error_from_body(error: object) -> DarkroomError:
    """The typed exception for an error body `{"code", "message", "field"}` from a job's events."""
    body = error if isinstance(error, dict) else {}
    code = str(body.get("code") or "internal_error")
    field = body.get("field") if isinstance(body.get("field"), str) else None
    status = STATUS_OF_CODE.get(code, 500)
    return error_class(status)(
        str(body.get("message") or code), status_code=status, code=code, field=field
    )
