"""The FastAPI application: thin routes over the engine. `create_app(settings)` builds it; nothing
happens at import time, and nothing here imports torch (the engine is imported only when the
app has to build one itself).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import (
    ClientDisconnected,
    DarkroomError,
    DeadlineExceeded,
    InvalidRequest,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from server.generation import EngineProtocol, GenerationResult, GenerationSpec
from server.images import MEDIA_TYPES
from server.jobs import TERMINAL, Event, Job, JobStore, response_of
from server.metrics import Metrics
from server.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    Health,
    JobCreated,
    JobStatus,
    ModelInfo,
    ModelsResponse,
    OpenAIImage,
    OpenAIImagesRequest,
    OpenAIImagesResponse,
    SamplerInfo,
)
from server.settings import Settings
from server.validation import resolve

log = logging.getLogger("darkroom.http")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (401, "Missing or wrong bearer API key."),
        (413, "Request body over the server's limit."),
        (422, "A field is invalid; `error.field` names it."),
        (503, "Queue full or server draining; see Retry-After."),
        (504, "The request ran past its deadline."),
    )
}
IMAGE_CONTENT = {media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()}
BEARER = HTTPBearer(auto_error=False, description="Required when the server has API keys.")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
OPENAI_FIELDS = {"num_images": "n", "width": "size", "height": "size", "output_format": "output_format"}


# ---------------------------------------------------------------------------------------------
# Middleware


class BodyLimit:
    """413 for bodies over `max_body_bytes`, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._reject(scope, receive, send)
            return
        # Buffer the body (at most the limit) so an oversized chunked upload is refused whole.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"the request body is over {self.max_body_bytes} bytes", field="body")
        await JSONResponse(error.to_json(), status_code=error.status)(scope, receive, send)


class CatchAll:
    """A clean 500 JSON for true bugs (never for bad input); the traceback goes to the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                body = {"error": {"code": "internal_error", "message": "internal server error", "field": None}}
                await JSONResponse(body, status_code=500)(scope, receive, send)


GenerateHandler = Callable[[GenerateRequest, Request], Awaitable[Response]]


class GenerateFastPath:
    """POST /generate with a JSON body that validates, served without FastAPI's per-request
    routing and dependency machinery (about a third of the server's CPU per request under load,
    bench/http_overhead.py). The body is parsed and validated as FastAPI does it (json.loads,
    then GenerateRequest in Python mode), then handed to the route's own handler; anything
    else (another route, another content type, a body that does not parse or validate, API keys
    configured) goes through FastAPI untouched, so every error response is FastAPI's as before.
    """

    def __init__(self, app: ASGIApp, handle: GenerateHandler, on_error: Callable[[DarkroomError], Response],
                 enabled: bool) -> None:
        self.app = app
        self.handle = handle
        self.on_error = on_error
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.enabled and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/generate" and not scope.get("root_path")):
            await self.app(scope, receive, send)
            return
        content_type = [v for k, v in scope["headers"] if k == b"content-type"]
        if content_type != [b"application/json"]:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect: FastAPI sees it as it would have
                await self.app(scope, _replay(b"".join(chunks), receive, message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = GenerateRequest.model_validate(json.loads(raw)) if raw else None
        except Exception:  # noqa: BLE001 - bad JSON, too deep, invalid fields: FastAPI answers as before
            body = None
        if body is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        request = StarletteRequest(scope, receive)
        try:
            response = await self.handle(body, request)
        except DarkroomError as error:
            response = self.on_error(error)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    """A receive that hands out the already-read body once (or `first`), then the real one."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first if first is not None else {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# ---------------------------------------------------------------------------------------------
# Error handlers: one place maps domain errors to HTTP


def _error_response(error: DarkroomError) -> JSONResponse:
    headers = {}
    if isinstance(error, Unavailable):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error.to_json(), status_code=error.status, headers=headers)


def _validation_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if len(parts) > 1 else parts
    return ".".join(parts) if parts else "body"


def domain_error_response(error: DarkroomError, metrics: Metrics) -> Response:
    """The response to a domain error (4xx ones counted as rejections)."""
    if 400 <= error.status < 499:
        metrics.rejections.labels(error.code).inc()
    return _error_response(error)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Map domain errors, validation errors and HTTP errors to the one JSON error shape."""

    async def domain(request: Request, error: Exception) -> Response:
        assert isinstance(error, DarkroomError)
        return domain_error_response(error, metrics)

    async def validation(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "invalid request", "type": ""}
        loc = tuple(first.get("loc", ("body",)))
        if first.get("type") == "json_invalid":
            loc = ("body",)
        field = _validation_field(loc)
        metrics.rejections.labels("invalid_request").inc()
        # the message never echoes the input (it may be the prompt)
        error_out = InvalidRequest(f"{field}: {first.get('msg', 'invalid value')}", field=field)
        return _error_response(error_out)

    async def http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        field = {400: "body", 404: "path", 405: "method"}.get(error.status_code)
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        body = {"error": {"code": code, "message": str(error.detail), "field": field}}
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    app.add_exception_handler(DarkroomError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)


# ---------------------------------------------------------------------------------------------
# Helpers the routes share


def _engine(request: Request) -> EngineProtocol:
    engine: EngineProtocol | None = request.app.state.engine
    if engine is None or not engine.ready:
        if engine is not None and engine.draining:
            raise Unavailable("the server is shutting down", retry_after_s=request.app.state.settings.retry_after_s, code="draining")
        if engine is not None and getattr(engine, "warming", False):
            raise Unavailable("the server is warming up (one pass per batch size)",
                              retry_after_s=request.app.state.settings.retry_after_s, code="not_ready")
        raise Unavailable("the model is not loaded yet", retry_after_s=request.app.state.settings.retry_after_s, code="not_ready")
    return engine


async def _resolve(request: Request, body: GenerateRequest) -> GenerationSpec:
    """Validate against the model's card; images are decoded off the event loop."""
    settings: Settings = request.app.state.settings
    engine = _engine(request)

    def run() -> GenerationSpec:
        return resolve(body, engine.cards(), timeout_s=settings.request_timeout_s, max_num_images=settings.max_num_images)

    if body.init_image is not None or body.control_image is not None:
        return await run_in_threadpool(run)
    return run()


async def _until_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body is already read); never on other errors."""
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return
    except Exception as e:  # noqa: BLE001 - a server that cannot tell us about disconnects
        log.debug("disconnect watch ended: %s", type(e).__name__)
    await asyncio.Event().wait()  # then only the result or the deadline ends the wait


async def _generate(request: Request, spec: GenerationSpec) -> GenerationResult:
    """Submit and await; a client disconnect or the deadline cancels the request in the engine."""
    engine = _engine(request)
    future = engine.submit(spec)
    watcher = asyncio.ensure_future(_until_disconnect(request))
    waiting: set[asyncio.Future[Any]] = {future, watcher}
    try:
        done, _ = await asyncio.wait(waiting, timeout=spec.timeout_s + 5.0, return_when=asyncio.FIRST_COMPLETED)
        if future in done:
            return future.result()
        if watcher in done:
            log.info("request %s: client disconnected", spec.id)
            raise ClientDisconnected("the client disconnected")
        raise DeadlineExceeded("the request ran past its deadline")
    finally:
        watcher.cancel()
        if not future.done():
            engine.cancel(spec.id)
            future.cancel()


def _accepted_image(accept: str | None) -> str | None:
    """'png' / 'jpeg' / 'webp' when Accept asks for image bytes, else None (JSON)."""
    if not accept:
        return None
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, media.strip().lower()))
    for _, _, media in sorted(ranked):
        if media in ("application/json", "*/*", "application/*"):
            return None
        for name, media_type in MEDIA_TYPES.items():
            if media == media_type:
                return name
        if media == "image/*":
            return ""  # the body's output_format
    return None


# ---------------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, engine: EngineProtocol | None = None) -> FastAPI:
    """The Darkroom app; the lifespan builds the engine from settings when none is given, then
    starts it, and on shutdown drains in-flight work."""
    settings = settings or Settings()
    metrics: Metrics = getattr(engine, "metrics", None) or Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.engine is None:
            from server.engine import build_engine

            app.state.engine = await run_in_threadpool(build_engine, settings, metrics)
        app.state.engine.start()
        warm_up = None
        wants = getattr(app.state.engine, "wants_warm_up", None)
        if wants is not None and wants():  # not ready from now until it is done; /healthz answers meanwhile
            warm_up = app.state.engine.start_warm_up()
        # Everything alive now (models, libraries, the app) lives as long as the server: out of
        # the collector's sight, a full collection no longer walks it, which took ~0.3 s of
        # stalled serving every ~1,500 requests on a tiny model (bench/http_overhead.py)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if warm_up is not None and not warm_up.done():
                warm_up.cancel()
            gc.unfreeze()
            eng = app.state.engine
            await run_in_threadpool(eng.drain, settings.drain_timeout_s)
            await run_in_threadpool(eng.stop)

    app = FastAPI(
        title="Darkroom",
        version="0.1.0",
        summary="Text-to-image inference with step-level batching across requests.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.jobs = JobStore(settings.max_jobs, settings.job_ttl_s)
    install_error_handlers(app, metrics)

    async def require_key(credentials: BearerCredentials) -> None:
        if not settings.api_keys:
            return
        token = credentials.credentials if credentials is not None else ""
        if not any(secrets.compare_digest(token.encode(), key.encode()) for key in settings.api_keys):
            raise Unauthorized("a valid bearer API key is required", field="authorization")

    public = APIRouter()
    api = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)

    @public.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @public.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request) -> Health:
        """Readiness: models loaded, engine running and not draining (503 during shutdown)."""
        _engine(request)
        return Health(status="ready")

    @public.get("/metrics", tags=["health"], response_class=Response,
                responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics_route() -> Response:
        """Prometheus metrics of this app."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/models", response_model=ModelsResponse, tags=["models"])
    async def models(request: Request) -> ModelsResponse:
        """Served models with their samplers, defaults and limits."""
        cards = _engine(request).cards()
        return ModelsResponse(
            models=[
                ModelInfo(
                    id=c.id, family=c.family, description=c.description, text_conditioned=c.text_conditioned,
                    samplers=[SamplerInfo(name=s.name, min_steps=s.min_steps, max_steps=s.max_steps,
                                          description=s.description) for s in c.samplers],
                    controlnets=list(c.controlnets), decoders=list(c.decoders), default_sampler=c.default_sampler,
                    default_steps=c.default_steps, default_guidance=c.default_guidance,
                    default_width=c.default_width, default_height=c.default_height,
                    latent_factor=c.latent_factor, min_side=c.min_side, max_side=c.max_side,
                    max_pixels=c.max_pixels, max_num_images=min(c.max_num_images, settings.max_num_images),
                    num_classes=c.num_classes,
                )
                for c in cards
            ]
        )

    @api.post(
        "/generate",
        response_model=GenerateResponse,
        tags=["generate"],
        responses={200: {"content": IMAGE_CONTENT, "description": "JSON, or image bytes when Accept asks for them."},
                   406: {"model": ErrorResponse}},
    )
    async def generate(body: GenerateRequest, request: Request) -> Response:
        """Generate images; JSON with base64 images, or raw bytes for `Accept: image/png|jpeg|webp`."""
        return await generate_response(body, request)

    async def generate_response(body: GenerateRequest, request: Request) -> Response:
        """POST /generate after validation (the route's and GenerateFastPath's)."""
        raw = _accepted_image(request.headers.get("accept"))
        if raw is not None:
            if body.num_images != 1:
                raise NotAcceptable("image bytes hold one image; ask for JSON or set num_images to 1", field="num_images")
            if raw:
                body = body.model_copy(update={"output_format": raw})
        spec = await _resolve(request, body)
        result = await _generate(request, spec)
        if raw is not None:
            headers = {
                "X-Request-Id": result.id,
                "X-Darkroom-Seed": str(result.seed),
                "X-Darkroom-Model": result.model,
                "X-Darkroom-Sampler": result.sampler,
                "X-Darkroom-Steps": str(result.steps),
                "X-Darkroom-Prompt-Truncated": "true" if result.prompt_truncated else "false",
                "X-Darkroom-Timings": json.dumps(result.timings, separators=(",", ":")),
            }
            return Response(result.images[0], media_type=MEDIA_TYPES[result.output_format], headers=headers)
        return JSONResponse(response_of(result, spec.num_images).model_dump(mode="json"),
                            headers={"X-Request-Id": result.id})

    @api.post("/v1/images/generations", response_model=OpenAIImagesResponse, tags=["openai"])
    async def openai_images(body: OpenAIImagesRequest, request: Request) -> OpenAIImagesResponse:
        """The OpenAI images API shape (b64_json responses)."""
        if body.response_format != "b64_json":
            raise InvalidRequest("only response_format 'b64_json' is supported", field="response_format")
        width = height = None
        if body.size is not None:
            w, _, h = body.size.partition("x")
            width, height = int(w), int(h)
            if not (8 <= width <= 8192 and 8 <= height <= 8192):
                raise InvalidRequest(f"'size' {body.size} is out of range", field="size")
        gen = GenerateRequest(prompt=body.prompt, model=body.model, num_images=body.n, width=width, height=height,
                              output_format=body.output_format)
        try:
            spec = await _resolve(request, gen)
        except InvalidRequest as e:
            raise InvalidRequest(e.message, field=OPENAI_FIELDS.get(e.field or "", e.field)) from None
        result = await _generate(request, spec)
        response = response_of(result, spec.num_images)
        return OpenAIImagesResponse(created=int(time.time()), data=[OpenAIImage(b64_json=i) for i in response.images])

    def _job(request: Request, job_id: str) -> Job:
        job = request.app.state.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'", field="id")
        return job

    @api.post("/v1/jobs", response_model=JobCreated, status_code=202, tags=["jobs"])
    async def create_job(body: GenerateRequest, request: Request) -> JobCreated:
        """Start a generation that runs on its own; follow it with GET .../events."""
        spec = await _resolve(request, body)
        engine = _engine(request)
        job = request.app.state.jobs.add(spec, lambda job: engine.submit(spec, on_progress=job.on_progress))
        return JobCreated(id=job.id, status=job.status)

    @api.get("/v1/jobs/{id}", response_model=JobStatus, tags=["jobs"], responses={404: {"model": ErrorResponse}})
    async def get_job(id: str, request: Request) -> JobStatus:
        """A job's state, progress and (when done) result."""
        return _job(request, id).view()

    @api.delete("/v1/jobs/{id}", response_model=JobStatus, tags=["jobs"], responses={404: {"model": ErrorResponse}})
    async def delete_job(id: str, request: Request) -> JobStatus:
        """Cancel a job (dropped at the engine's next step); a finished job is forgotten."""
        job = _job(request, id)
        if job.status in TERMINAL:
            request.app.state.jobs.remove(id)
            return job.view()
        engine: EngineProtocol | None = request.app.state.engine
        if engine is not None:
            engine.cancel(id)
        job.settle("cancelled")
        return job.view()

    @api.get(
        "/v1/jobs/{id}/events",
        tags=["jobs"],
        response_class=Response,
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                         "description": "Server-sent events: progress {step, total, preview_png?}, then "
                                        "result (a GenerateResponse), error or cancelled."},
                   404: {"model": ErrorResponse}},
    )
    async def job_events(id: str, request: Request) -> Response:
        """Server-sent events of a job: progress, optional previews, then the result."""
        job = _job(request, id)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        job.subscribers.append(queue)
        backlog = [e for e in (job.last_progress, job.final_event()) if e is not None]

        async def stream() -> AsyncIterator[ServerSentEvent]:
            try:
                for event in backlog:
                    yield ServerSentEvent(json.dumps(event.data), event=event.name)
                    if event.name != "progress":
                        return
                while True:
                    event = await queue.get()
                    yield ServerSentEvent(json.dumps(event.data), event=event.name)
                    if event.name != "progress":
                        return
            finally:
                if queue in job.subscribers:
                    job.subscribers.remove(queue)

        return EventSourceResponse(stream(), ping=15)

    app.include_router(public)
    app.include_router(api)
    # the last added is the outermost: BodyLimit (413), then CatchAll (500), then the fast path
    app.add_middleware(GenerateFastPath, handle=generate_response,
                       on_error=lambda error: domain_error_response(error, metrics), enabled=not settings.api_keys)
    app.add_middleware(CatchAll)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    return app

