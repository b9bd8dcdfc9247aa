"""Darkroom's hand-written convenience layer over the generated SDK (darkroom_client).

    from darkroom_client_ext import Darkroom
    image = Darkroom("http://127.0.0.1:8000").generate("a small red circle left of a blue square")
"""

from .client import AsyncDarkroom, Darkroom, decode_image, decode_images, job_outcome, make_request
from .errors import (
    BadRequest,
    Conflict,
    DarkroomError,
    DeadlineExceeded,
    NotAcceptable,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    StreamError,
    Unauthorized,
    ValidationError,
)
from .events import ServerSentEvent

__all__ = [
    "AsyncDarkroom",
    "BadRequest",
    "Conflict",
    "Darkroom",
    "DarkroomError",
    "DeadlineExceeded",
    "NotAcceptable",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ServerError",
    "ServerSentEvent",
    "StreamError",
    "Unauthorized",
    "ValidationError",
    "decode_image",
    "decode_images",
    "job_outcome",
    "make_request",
]
