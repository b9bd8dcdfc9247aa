"""Server-sent events: a decoder for `text/event-stream` bodies, fed line by line.

Follows the event-stream interpretation of the WHATWG HTML standard (section 9.2.6): `event`,
`data` (several lines join with "\\n"), `id` and `retry` fields; lines starting with ":" are
comments (keep-alives); a blank line dispatches the event; an event without data is dropped,
and so is an unterminated one at the end of the stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: its type, its data lines joined by "\\n", the last event id."""

    event: str
    data: str
    id: str | None = None
    retry_ms: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (Darkroom's events all carry a JSON object)."""
        return json.loads(self.data)


class SSEDecoder:
    """Turns the lines of an event stream (without their line endings) into events."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry_ms: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line; return the event a blank line completes, else None."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry_ms = int(value)
        # Any other field name is ignored, as the standard says.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._last_id,
            retry_ms=self._retry_ms,
        )
        self._event = ""
        self._data = []
        return event


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events decoded from an iterable of lines (e.g. `httpx.Response.iter_lines()`)."""
    decoder = SSEDecoder()
    for line in lines:
        event = decoder.feed(line.rstrip("\r\n"))
        if event is not None:
            yield event


async def aiter_sse(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """Events decoded from an async iterable of lines (`httpx.Response.aiter_lines()`)."""
    decoder = SSEDecoder()
    async for line in lines:
        event = decoder.feed(line.rstrip("\r\n"))
        if event is not None:
            yield event
