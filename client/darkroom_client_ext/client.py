"""`Darkroom` and `AsyncDarkroom`: a few calls over the generated SDK for the common cases.

The request and response bodies are the generated `darkroom_client.models` classes, so this
layer stays in step with openapi.json; errors become `darkroom_client_ext.errors` exceptions.
`.api` is the generated client itself, sharing the connection pool, for every other call:

    from darkroom_client.api.jobs import get_job_v1_jobs_id_get
    status = get_job_v1_jobs_id_get.sync(id=job_id, client=darkroom.api)
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Literal, Self

import httpx
from darkroom_client import AuthenticatedClient, Client
from darkroom_client.models import (
    GenerateRequest,
    GenerateRequestOutputFormat,
    GenerateResponse,
    JobCreated,
    JobStatus,
    ModelInfo,
    ModelsResponse,
)
from darkroom_client.types import UNSET

from .errors import Conflict, StreamError, error_from_body, error_from_response
from .events import ServerSentEvent, aiter_sse, iter_sse

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_TIMEOUT_S = 300.0  # one request's whole life: queueing, denoising, decoding
CONNECT_TIMEOUT_S = 10.0


def make_request(
    prompt: str,
    *,
    negative_prompt: str = "",
    model: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
    num_images: int = 1,
    output_format: Literal["png", "jpeg", "webp"] = "png",
    preview: bool = False,
) -> GenerateRequest:
    """A GenerateRequest; parameters left None are omitted so the model's defaults apply."""
    return GenerateRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=UNSET if model is None else model,
        sampler=UNSET if sampler is None else sampler,
        steps=UNSET if steps is None else steps,
        guidance=UNSET if guidance is None else guidance,
        seed=UNSET if seed is None else seed,
        width=UNSET if width is None else width,
        height=UNSET if height is None else height,
        num_images=num_images,
        output_format=GenerateRequestOutputFormat(output_format),
        preview=preview,
    )


def decode_image(data: bytes) -> Image:
    """PNG / JPEG / WebP bytes as a loaded PIL image (needs the `pillow` extra)."""
    try:
        from PIL import Image as PILImage
    except ImportError as exc:  # Pillow is an optional extra of darkroom-client
        raise ImportError("decoding images needs Pillow: pip install 'darkroom-client[pillow]'") from exc
    image = PILImage.open(io.BytesIO(data))
    image.load()
    return image


def decode_images(response: GenerateResponse) -> list[Image]:
    """The base64 images of a /generate JSON answer as PIL images."""
    return [decode_image(base64.b64decode(b64)) for b64 in response.images]


def _raise_for_error(response: httpx.Response) -> None:
    """Raise the typed DarkroomError of a non-2xx answer (its body must be read)."""
    if response.is_error:
        raise error_from_response(response)


ProgressCallback = Callable[[int, int], None]  # (step, total): model evaluations done / needed


def job_outcome(event: ServerSentEvent, on_progress: ProgressCallback | None) -> GenerateResponse | None:
    """Handle one job event: None for progress, the result at the end, or raise the job's error.

    The server's events (server/app.py): `progress` {step, total, preview_png?}, then one of
    `result` (a GenerateResponse), `error` {error: {code, message, field}} or `cancelled`.
    """
    if event.event == "progress":
        if on_progress is not None:
            data = event.json()
            on_progress(int(data["step"]), int(data["total"]))
        return None
    if event.event == "result":
        return GenerateResponse.from_dict(event.json())
    if event.event == "error":
        raise error_from_body(event.json().get("error"))
    if event.event == "cancelled":
        raise Conflict("the job was cancelled", status_code=409, code="cancelled")
    return None  # an event type this client does not know yet: skip it


def _stream_ended(job_id: str) -> StreamError:
    return StreamError(
        f"the event stream of job {job_id!r} ended before the job did", status_code=200, code="stream_ended"
    )


def _make_api(
    base_url: str, api_key: str | None, timeout_s: float, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None
) -> Client | AuthenticatedClient:
    timeout = httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S)
    httpx_args = {} if transport is None else {"transport": transport}
    if api_key:
        return AuthenticatedClient(base_url=base_url, token=api_key, timeout=timeout, httpx_args=httpx_args)
    return Client(base_url=base_url, timeout=timeout, httpx_args=httpx_args)


class Darkroom:
    """Blocking client: `Darkroom("http://127.0.0.1:8000").generate("a red circle")`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api = _make_api(base_url, api_key, timeout_s, transport)
        self._http = self.api.get_httpx_client()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        model: str | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Image:
        """One image for `prompt`, fetched as raw PNG bytes (no base64) and decoded."""
        body = make_request(
            prompt, negative_prompt=negative_prompt, model=model, sampler=sampler, steps=steps,
            guidance=guidance, seed=seed, width=width, height=height,
        )
        response = self._http.post("/generate", json=body.to_dict(), headers={"Accept": "image/png"})
        _raise_for_error(response)
        return decode_image(response.content)

    def generate_json(self, request: GenerateRequest) -> GenerateResponse:
        """POST /generate with any request; base64 images plus metadata (seed, timings, ...)."""
        response = self._http.post("/generate", json=request.to_dict(), headers={"Accept": "application/json"})
        _raise_for_error(response)
        return GenerateResponse.from_dict(response.json())

    def submit_job(self, request: GenerateRequest) -> str:
        """POST /v1/jobs; returns the job id at once (follow it with `iter_job_events`)."""
        response = self._http.post("/v1/jobs", json=request.to_dict())
        _raise_for_error(response)
        return JobCreated.from_dict(response.json()).id

    def get_job(self, job_id: str) -> JobStatus:
        """GET /v1/jobs/{id}: its state, progress, and its result once finished."""
        response = self._http.get(f"/v1/jobs/{job_id}")
        _raise_for_error(response)
        return JobStatus.from_dict(response.json())

    def cancel_job(self, job_id: str) -> None:
        """DELETE /v1/jobs/{id}: the job is dropped at its next step."""
        _raise_for_error(self._http.delete(f"/v1/jobs/{job_id}"))

    def iter_job_events(self, job_id: str) -> Iterator[ServerSentEvent]:
        """The job's server-sent events (progress, previews, the end) until the server closes."""
        with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}
        ) as response:
            if response.is_error:
                response.read()
                _raise_for_error(response)
            yield from iter_sse(response.iter_lines())

    def wait_job(self, job_id: str, on_progress: ProgressCallback | None = None) -> GenerateResponse:
        """Follow the job's events to its end; its result, or its error as a typed exception."""
        for event in self.iter_job_events(job_id):
            result = job_outcome(event, on_progress)
            if result is not None:
                return result
        raise _stream_ended(job_id)

    def models(self) -> list[ModelInfo]:
        """GET /v1/models: every served model with its samplers, defaults and limits."""
        response = self._http.get("/v1/models")
        _raise_for_error(response)
        return ModelsResponse.from_dict(response.json()).models

    def ready(self) -> bool:
        """GET /readyz: True once the models are loaded and the server is not draining."""
        return self._http.get("/readyz").status_code == 200


class AsyncDarkroom:
    """The same calls for asyncio: `await AsyncDarkroom(url).generate("a red circle")`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api = _make_api(base_url, api_key, timeout_s, transport)
        self._http = self.api.get_async_httpx_client()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        model: str | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Image:
        """One image for `prompt`, fetched as raw PNG bytes (no base64) and decoded."""
        body = make_request(
            prompt, negative_prompt=negative_prompt, model=model, sampler=sampler, steps=steps,
            guidance=guidance, seed=seed, width=width, height=height,
        )
        response = await self._http.post("/generate", json=body.to_dict(), headers={"Accept": "image/png"})
        _raise_for_error(response)
        return decode_image(response.content)

    async def generate_json(self, request: GenerateRequest) -> GenerateResponse:
        """POST /generate with any request; base64 images plus metadata (seed, timings, ...)."""
        response = await self._http.post(
            "/generate", json=request.to_dict(), headers={"Accept": "application/json"}
        )
        _raise_for_error(response)
        return GenerateResponse.from_dict(response.json())

    async def submit_job(self, request: GenerateRequest) -> str:
        """POST /v1/jobs; returns the job id at once (follow it with `iter_job_events`)."""
        response = await self._http.post("/v1/jobs", json=request.to_dict())
        _raise_for_error(response)
        return JobCreated.from_dict(response.json()).id

    async def get_job(self, job_id: str) -> JobStatus:
        """GET /v1/jobs/{id}: its state, progress, and its result once finished."""
        response = await self._http.get(f"/v1/jobs/{job_id}")
        _raise_for_error(response)
        return JobStatus.from_dict(response.json())

    async def cancel_job(self, job_id: str) -> None:
        """DELETE /v1/jobs/{id}: the job is dropped at its next step."""
        _raise_for_error(await self._http.delete(f"/v1/jobs/{job_id}"))

    async def iter_job_events(self, job_id: str) -> AsyncIterator[ServerSentEvent]:
        """The job's server-sent events (progress, previews, the end) until the server closes."""
        async with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}
        ) as response:
            if response.is_error:
                await response.aread()
                _raise_for_error(response)
            async for event in aiter_sse(response.aiter_lines()):
                yield event

    async def wait_job(self, job_id: str, on_progress: ProgressCallback | None = None) -> GenerateResponse:
        """Follow the job's events to its end; its result, or its error as a typed exception."""
        async for event in self.iter_job_events(job_id):
            result = job_outcome(event, on_progress)
            if result is not None:
                return result
        raise _stream_ended(job_id)

    async def models(self) -> list[ModelInfo]:
        """GET /v1/models: every served model with its samplers, defaults and limits."""
        response = await self._http.get("/v1/models")
        _raise_for_error(response)
        return ModelsResponse.from_dict(response.json()).models

    async def ready(self) -> bool:
        """GET /readyz: True once the models are loaded and the server is not draining."""
        return (await self._http.get("/readyz")).status_code == 200
