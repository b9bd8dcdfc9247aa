"""The text/event-stream decoder against the cases of the WHATWG event-stream rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from darkroom_client_ext import Darkroom, ServerSentEvent
from darkroom_client_ext.events import aiter_sse, iter_sse


def test_fields_multiline_data_comments_and_ids() -> None:
    lines = [
        ": keep-alive",
        "event: progress",
        "id: 1",
        'data: {"step": 1,',
        'data:  "total": 4}',
        "",
        "retry: 1500",
        "data:plain",
        "",
        "event: done",
        "data",  # a field with no colon: empty value
        "",
    ]
    events = list(iter_sse(lines))
    assert events == [
        ServerSentEvent(event="progress", data='{"step": 1,\n "total": 4}', id="1"),
        ServerSentEvent(event="message", data="plain", id="1", retry_ms=1500),
        ServerSentEvent(event="done", data="", id="1", retry_ms=1500),
    ]
    assert events[0].json() == {"step": 1, "total": 4}


def test_event_without_data_and_unterminated_event_are_dropped() -> None:
    lines = ["event: ping", "", "data: x", "unknown: ignored", "id: a\0b", "", "data: cut off"]
    assert list(iter_sse(lines)) == [ServerSentEvent(event="message", data="x", id=None)]


def test_crlf_line_endings_are_stripped() -> None:
    events = list(iter_sse(["event: progress\r", "data: 7\r", "\r"]))
    assert events == [ServerSentEvent(event="progress", data="7")]


def test_async_decoder_matches_sync() -> None:
    lines = ["event: a", "data: 1", "", "data: 2", ""]

    async def agen() -> AsyncIterator[str]:
        for line in lines:
            yield line

    async def collect() -> list[ServerSentEvent]:
        return [event async for event in aiter_sse(agen())]

    assert asyncio.run(collect()) == list(iter_sse(lines))


def test_iter_job_events_reads_a_chunked_stream() -> None:
    # Chunk boundaries fall inside lines and inside the blank separator line.
    body = b'event: progress\ndata: {"step": 1}\n\nevent: progress\nda' + b'ta: {"step": 2}\n' + b"\nevent: done\ndata: {}\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/jobs/j1/events"
        assert request.headers["accept"] == "text/event-stream"
        chunks = [body[:20], body[20:41], body[41:]]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    with Darkroom("http://test", transport=httpx.MockTransport(handler)) as client:
        events = list(client.iter_job_events("j1"))
    assert [(e.event, e.json()) for e in events] == [
        ("progress", {"step": 1}),
        ("progress", {"step": 2}),
        ("done", {}),
    ]
