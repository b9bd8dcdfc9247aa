"""Domain errors of the server; one exception handler in server.app maps them to HTTP.

Every error carries a stable machine-readable `code`, a message for people and, for input
errors, the request `field` it is about. The JSON body is always
`{"error": {"code": ..., "message": ..., "field": ...}}`.
"""

from __future__ import annotations


class DarkroomError(Exception):
    """Base of all errors the API reports; `status` is the HTTP status it maps to."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidRequest(DarkroomError):
    """The request is well-formed JSON but a value is out of range or unsupported."""

    status = 422
    code = "invalid_request"


class Unauthorized(DarkroomError):
    status = 401
    code = "unauthorized"


class NotFound(DarkroomError):
    status = 404
    code = "not_found"


class NotAcceptable(DarkroomError):
    status = 406
    code = "not_acceptable"


class PayloadTooLarge(DarkroomError):
    status = 413
    code = "payload_too_large"


class Unavailable(DarkroomError):
    """Retryable: the queue is full, the server is draining or not ready (503 + Retry-After)."""

    status = 503
    code = "unavailable"

    def __init__(
        self, message: str, *, retry_after_s: int = 1, field: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.retry_after_s = retry_after_s


class QueueFull(Unavailable):
    """The bounded queue is full."""

    code = "queue_full"


class Draining(Unavailable):
    """The server is shutting down and takes no new work."""

    code = "draining"


class ClientDisconnected(DarkroomError):
    """The client hung up before the answer; the 499 is for the log, nobody reads it."""

    status = 499
    code = "client_disconnected"


class DeadlineExceeded(DarkroomError):
    """The request ran past request_timeout_s."""

    status = 504
    code = "deadline_exceeded"


class Cancelled(DarkroomError):
    """The request was cancelled (job DELETE or client gone); 409 when someone still asks."""

    status = 409
    code = "cancelled"


class GenerationFailed(DarkroomError):
    """The model failed on this request (model_error, nan_output, out_of_memory)."""

    status = 500
    code = "model_error"


class OutOfMemory(GenerationFailed):
    """Even a batch of this one request alone did not fit; retrying later may succeed."""

    status = 503
    code = "out_of_memory"
