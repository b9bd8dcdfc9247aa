"""The text/event-stream decoder against the cases of the WHATWG event-stream rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
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


RESULT = {
    "id": "j1",
    "format": "png",
    "images": ["iVBORw0KGgo="],
    "metadata": {
        "seed": 7, "model": "bundled", "sampler": "ddim", "steps": 4, "guidance": 4.0, "width": 64,
        "height": 32, "num_images": 1, "prompt_truncated": False,
        "timings": {"queue_s": 0.0, "denoise_s": 0.1, "decode_s": 0.01, "encode_s": 0.01, "total_s": 0.12},
    },
}


def _stream_client(body: str) -> Darkroom:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

    return Darkroom("http://test", transport=httpx.MockTransport(handler))


def test_wait_job_reports_progress_and_returns_the_result() -> None:
    import json

    body = (
        'event: progress\ndata: {"step": 1, "total": 2}\n\n: ping\n\n'
        'event: progress\ndata: {"step": 2, "total": 2}\n\n'
        f"event: result\ndata: {json.dumps(RESULT)}\n\n"
    )
    seen: list[tuple[int, int]] = []
    result = _stream_client(body).wait_job("j1", on_progress=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 2), (2, 2)]
    assert (result.id, result.metadata.seed, result.metadata.height, result.images) == ("j1", 7, 32, ["iVBORw0KGgo="])


def test_wait_job_raises_the_jobs_error_typed() -> None:
    from darkroom_client_ext import Conflict, Overloaded, ServerError, StreamError

    error = '{"error": {"code": "nan_output", "message": "the image had NaNs", "field": null}}'
    with pytest.raises(ServerError) as info:
        _stream_client(f"event: error\ndata: {error}\n\n").wait_job("j1")
    assert (info.value.status_code, info.value.code) == (500, "nan_output")
    oom = '{"error": {"code": "out_of_memory", "message": "too big", "field": null}}'
    with pytest.raises(Overloaded):
        _stream_client(f"event: error\ndata: {oom}\n\n").wait_job("j1")
    with pytest.raises(Conflict) as cancelled:
        _stream_client('event: cancelled\ndata: {"id": "j1"}\n\n').wait_job("j1")
    assert cancelled.value.code == "cancelled"
    with pytest.raises(StreamError):
        _stream_client('event: progress\ndata: {"step": 1, "total": 2}\n\n').wait_job("j1")
