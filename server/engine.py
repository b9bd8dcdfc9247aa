"""The serving engine: continuous batching of denoising steps across requests.

Each request becomes a sampler generator (pipelines.samplers) that yields `(x, sigma)` when it
needs the model. One engine iteration, in the shape of vLLM v1's engine core:

1. admit   - arrivals leave the bounded queue for the active set; their prompts are encoded in
             one batched text-encoder call (cached by (model, prompt) in an LRU);
2. schedule - pick a compatibility class (model, latent shape, ControlNet) by oldest pending
             work, gather up to `max_batch` latent rows of that class at whatever step each is;
3. execute - pad the rows to a bucket size and run ONE guided forward pass (cond + uncond rows
             together, a guidance scale per row);
4. update  - hand each request its slice of x0; finished latents are decoded in one batched
             VAE call and encoded to PNG/JPEG/WebP on a thread pool.

All torch work runs on one dedicated thread. The asyncio side only submits and awaits futures,
resolved through `loop.call_soon_threadsafe`. Randomness comes from each request's own seeded
generator, so an image does not depend on which requests shared its forward passes.

Failure containment: a forward pass that raises is retried with each request alone, so only
the request that fails alone fails; CUDA out-of-memory splits the batch in halves; a NaN image
gets one fp32 VAE retry, then fails with code `nan_output`.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from torch import Tensor

from pipelines.conditioning import Conditioning, Denoiser, GuidedConditioning, to_device
from pipelines.guidance import cfg, classifier_guidance
from pipelines.model import LatentAutoencoder, LoadedModel
from pipelines.samplers import SAMPLERS, make_sampler, seeded_noise
from pipelines.text import sdxl_time_ids
from pipelines.text_to_image import sampling_sigmas
from server.classifier import classifier_of
from server.errors import (
    Cancelled,
    DarkroomError,
    DeadlineExceeded,
    Draining,
    GenerationFailed,
    InvalidRequest,
    OutOfMemory,
    QueueFull,
    Unavailable,
)
from server.generation import (
    GenerationResult,
    GenerationSpec,
    ModelCard,
    Progress,
    ProgressCallback,
    SamplerCard,
)
from server.images import encode_image, encode_jpeg_cuda, preview_png
from server.metrics import Metrics
from server.settings import Settings

log = logging.getLogger("darkroom.engine")

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GuidedForward = Callable[[Tensor, Tensor, GuidedConditioning], Tensor]
# the control image of warm-up passes through a ControlNet: a black 8x8 RGB PNG (resized to each size)
_BLANK_CONTROL = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAADElEQVR4nGNgGB4AAADIAAGtQHYiAAAAAElFTkSuQmCC"


def bucket_size(rows: int, max_batch: int) -> int:
    """The smallest bucket holding `rows`, never above max_batch (which is then its own bucket)."""
    for b in BUCKETS:
        if b >= rows:
            return min(b, max_batch) if rows <= max_batch else rows
    return rows


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA (or other allocator) out-of-memory, whichever exception type carries it."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


# ---------------------------------------------------------------------------------------------
# Objects passed between the stages


ClassKey = tuple[str, tuple[int, int, int], str | None]  # (model id, latent (C, h, w), ControlNet)


@dataclass(eq=False)
class Work:
    """One request inside the engine, from arrival to its last image."""

    spec: GenerationSpec
    key: ClassKey
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[GenerationResult]
    on_progress: ProgressCallback | None
    arrival: float  # time.monotonic() at submit
    deadline: float  # arrival + spec.timeout_s
    cancelled: bool = False  # set from the event loop; read by the engine at its next step
    # Set at admission (engine thread only):
    started: float = 0.0
    generator: object | None = None  # the sampler generator
    guided: GuidedConditioning | None = None  # n rows; guide recomputed per step
    sigmas: Tensor | None = None  # float64, the request's schedule (last entry: where it stops)
    pending: tuple[Tensor, Tensor] | None = None  # (x (n, C, h, w), sigma 0-d) awaiting the model
    last_served: float = 0.0  # when it last got a model call; the oldest goes first
    evals_done: int = 0
    evals_total: int = 1
    prompt_truncated: bool = False
    final_x: Tensor | None = None  # set when the sampler returns
    denoise_s: float = 0.0


@dataclass
class ScheduledBatch:
    """The output of `schedule`: requests of one class whose pending calls go in one pass."""

    key: ClassKey
    members: list[Work]  # oldest pending work first; sum of rows <= max_batch
    rows: int


@dataclass
class BatchOutcome:
    """The output of `execute`: x0 per request, or the error that request failed with."""

    x0: dict[int, Tensor] = field(default_factory=dict)  # id(work) -> (n, C, h, w)
    errors: dict[int, DarkroomError] = field(default_factory=dict)


@dataclass
class _Served:
    """A loaded model with what the engine derives from it once."""

    model: LoadedModel
    card: ModelCard
    guided: dict[str | None, GuidedForward] = field(default_factory=dict)  # ControlNet name -> forward


# ---------------------------------------------------------------------------------------------


class TextCache:
    """LRU of (model id, prompt) -> (one-row Conditioning, truncated)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[tuple[str, str], tuple[Conditioning, bool]] = (
            collections.OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> tuple[Conditioning, bool] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, str], value: tuple[Conditioning, bool]) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


def _sampler_cards(max_steps: int) -> tuple[SamplerCard, ...]:
    """Every registered sampler, its step range capped by the server's `max_steps`."""
    return tuple(
        SamplerCard(
            name=name,
            min_steps=spec.min_steps,
            max_steps=max(spec.min_steps, min(spec.max_steps, max_steps)),
            description=spec.description,
        )
        for name, spec in SAMPLERS.items()
    )


def model_card(model: LoadedModel, settings: Settings, samplers: tuple[SamplerCard, ...]) -> ModelCard:
    """The HTTP-facing description of a loaded model: defaults, limits, samplers."""
    f = model.family
    max_rows = settings.max_batch
    max_pixels = min(f.max_pixels, settings.max_batch_pixels)
    return ModelCard(
        id=model.id,
        family=f.name,
        description=model.description,
        text_conditioned=model.text_encoder is not None,
        samplers=samplers,
        controlnets=tuple(model.controlnets),
        default_sampler=f.default_sampler,
        default_steps=f.default_steps,
        default_guidance=f.default_guidance,
        default_width=f.default_width,
        default_height=f.default_height,
        latent_factor=f.latent_factor,
        min_side=f.min_side,
        max_side=f.max_side,
        max_pixels=max_pixels,
        max_num_images=max_rows,
        num_classes=None if model.text_encoder is not None else getattr(model.denoiser, "null_class", None),
        classifier_labels=None if (classifier := classifier_of(model)) is None else classifier.prompt_labels,
        decoders=("full", "tiny") if model.tiny_vae is not None else ("full",),
    )


def _decoder(model: LoadedModel, work: Work) -> LatentAutoencoder:
    """The decoder a request asked for: the model's VAE, or its tiny decoder (fast mode; submit checked it exists)."""
    return model.tiny_vae if work.spec.decoder == "tiny" and model.tiny_vae is not None else model.vae


def _pixels_to_uint8_chw(images: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) uint8 on the same device (the GPU encoder's input)."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


def _pixels_to_uint8(images: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8 on the host (Pillow's input)."""
    return _pixels_to_uint8_chw(images).permute(0, 2, 3, 1).cpu().numpy()


def _latent_preview(x0: Tensor) -> np.ndarray:
    """A rough RGB view of one latent (C, h, w): first three channels, each min-max scaled."""
    channels = x0[:3].float()
    if channels.shape[0] < 3:
        channels = channels[:1].expand(3, -1, -1)
    lo = channels.amin(dim=(1, 2), keepdim=True)
    hi = channels.amax(dim=(1, 2), keepdim=True)
    scaled = (channels - lo) / (hi - lo).clamp_min(1e-6)
    return _pixels_to_uint8(scaled[None])[0]


def _zero_text(cond: Conditioning) -> Conditioning:
    """Zeroed text embeddings (SDXL's uncond for an empty negative prompt)."""
    return replace(
        cond,
        text_embeddings=None if cond.text_embeddings is None else torch.zeros_like(cond.text_embeddings),
        pooled_text_embeddings=None
        if cond.pooled_text_embeddings is None
        else torch.zeros_like(cond.pooled_text_embeddings),
    )


class Engine:
    """Continuous batching of denoising steps over one or more loaded models on one device."""

    def __init__(
        self,
        models: list[LoadedModel],
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        guidance: Callable[[Denoiser], GuidedForward] | None = None,
    ) -> None:
        if not models:
            raise ValueError("the engine needs at least one model")
        self.settings = settings or Settings()
        self.metrics = metrics or Metrics()
        if guidance is None:
            guidance = cfg  # type: ignore[assignment]
        self._guidance = guidance
        samplers = _sampler_cards(self.settings.max_steps)
        self._served: dict[str, _Served] = {
            m.id: _Served(model=m, card=model_card(m, self.settings, samplers)) for m in models
        }
        self._text_cache = TextCache(self.settings.text_cache_size)
        # (model id, sampler, steps) -> the schedule, computed once (engine thread only)
        self._sigmas: dict[tuple[str, str, int], Tensor] = {}
        self._lock = threading.Lock()
        # event loop -> callbacks waiting for its next wake-up (_call_in_loop); guarded by _settle_lock
        self._settle_lock = threading.Lock()
        self._to_settle: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        self._wake = threading.Condition(self._lock)
        self._inbox: collections.deque[Work] = collections.deque()  # guarded by _lock
        self._by_id: dict[str, Work] = {}  # every request not yet resolved; guarded by _lock
        self._active: list[Work] = []  # engine thread only
        self._active_count = 0  # mirrors len(_active) for submit(); guarded by _lock
        self._stop = False
        self._draining = False
        self._warming = False  # warm_up() running: not ready yet
        self._warmed_up = False  # a warm_up() has finished: an app started over this engine again skips it
        self._thread: threading.Thread | None = None
        self._encoder_pool = ThreadPoolExecutor(self.settings.encode_threads, thread_name_prefix="darkroom-encode")
        # settings.decode_overlap: one decode thread with its own CUDA stream (created on first use)
        self._decode_pool: ThreadPoolExecutor | None = None
        self._decode_stream: torch.cuda.Stream | None = None
        # settings.decode_pipeline: (works, images, finite flag, started) launched, not yet waited on
        self._pending_decodes: list[tuple[list[Work], Tensor, Tensor, float]] = []
        self.iterations = 0  # engine iterations that ran a forward pass
        self._latency_ema_s = 0.0  # moving average of request latency, for Retry-After

    # -- the asyncio side ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return (self._thread is not None and self._thread.is_alive() and not self._draining and not self._stop
                and not self._warming)

    @property
    def warming(self) -> bool:
        return self._warming

    def wants_warm_up(self) -> bool:
        """settings.warm_up, or when unset: some served model is on CUDA (graphs / compile / cuDNN choose
        their kernels on first use of each shape; on a CPU the first pass costs no more than the next).
        Never once a warm-up has finished: every bucket is compiled and captured already."""
        if self._warmed_up:
            return False
        if self.settings.warm_up is not None:
            return self.settings.warm_up
        return any(s.model.device.type == "cuda" for s in self._served.values())

    def warm_up_buckets(self, model_id: str, size: tuple[int, int] | None = None) -> list[int]:
        """Images per pass that warm_up() runs for a model at `size` (width, height; default: the
        model's default size): every bucket the engine can pad a pass of that size to (bucket_size),
        within max_batch and the per-pass pixel budget."""
        f = self._served[model_id].model.family
        width, height = size or (f.default_width, f.default_height)
        fit = max(1, min(self.settings.max_batch, self.settings.max_batch_pixels // (width * height)))
        return sorted({bucket_size(n, self.settings.max_batch) for n in range(1, fit + 1)})

    def warm_up_shapes(self, model_id: str) -> list[tuple[tuple[int, int], str | None]]:
        """The (size, ControlNet) pairs warm_up() runs for a model: its default size and each of
        settings.warm_up_sizes, each without a ControlNet and with each of the model's ControlNets
        (a ControlNet pass is a different graph: the adapter's forward and the UNet's residual inputs)."""
        f = self._served[model_id].model.family
        sizes = list(dict.fromkeys([(f.default_width, f.default_height), *self.settings.warm_up_sizes]))
        controlnets: list[str | None] = [None, *self._served[model_id].card.controlnets]
        return [(size, controlnet) for size in sizes for controlnet in controlnets]

    def start_warm_up(self) -> asyncio.Task[dict[str, float]]:
        """Mark the engine warming (not ready) at once and run warm_up() as a task of the running loop."""
        self._warming = True
        return asyncio.get_running_loop().create_task(self.warm_up())

    async def warm_up(self) -> dict[str, float]:
        """Before serving: run, for each served model, one pass of every bucket (warm_up_buckets) of
        every shape it will serve (warm_up_shapes: its default size and settings.warm_up_sizes, with
        and without each ControlNet), so CUDA graphs are captured and torch.compile'd UNets and
        decoders compiled before the first user waits for them (minutes for a compiled SDXL UNet from
        an empty cache). Each pass is `n` requests at the model's defaults and its default sampler's
        fewest steps, submitted together and resolved by server.validation.resolve as a POST /generate
        body would be (a ControlNet pass sends a blank control image), so the engine's own batching,
        padding, guidance rows, decode and encoding take the shapes real traffic will (its passes show
        in the step and batch histograms like any other). A size the model does not accept is logged
        and skipped. Readiness stays 503 until it returns; a failure is logged, never fatal. Returns
        seconds per model."""
        from server.schemas import GenerateRequest
        from server.validation import resolve

        seconds: dict[str, float] = {}
        self._warming = True
        try:
            for model_id, served in self._served.items():
                card = served.card
                default_sampler = card.sampler(card.default_sampler)
                base = GenerateRequest(prompt="a warm-up" if card.text_conditioned else "0", model=model_id,
                                       steps=default_sampler.min_steps if default_sampler is not None else None)
                started = time.perf_counter()
                for k, ((width, height), controlnet) in enumerate(self.warm_up_shapes(model_id)):
                    shape = f"{width}x{height}" + (f" with ControlNet {controlnet}" if controlnet else "")
                    request = base.model_copy(update={"width": width, "height": height, "controlnet": controlnet,
                                                      "control_image": _BLANK_CONTROL if controlnet else None})
                    buckets = self.warm_up_buckets(model_id, (width, height))
                    try:
                        for decoder in card.decoders:  # the tiny decoder's compiled graphs too, when it has one
                            for n in buckets:
                                specs = [replace(resolve(request.model_copy(update={"seed": i, "decoder": decoder}), [card],
                                                         timeout_s=3600.0, max_num_images=1),
                                                 id=f"warm-up-{model_id}-{k}-{decoder}-{n}-{i}") for i in range(n)]
                                await asyncio.gather(*(self.submit(spec) for spec in specs))
                    except InvalidRequest as e:
                        log.warning("warm-up of model %s at %s skipped: %s", model_id, shape, e)
                        continue
                    except Exception as e:  # noqa: BLE001 - serving starts anyway; the first requests pay instead
                        log.warning("warm-up of model %s at %s failed: %s: %s", model_id, shape, type(e).__name__, e)
                        continue
                    log.info("warm-up of model %s at %s: passes of %s images", model_id, shape, buckets)
                seconds[model_id] = time.perf_counter() - started
                log.info("warm-up of model %s: %.1f s", model_id, seconds[model_id])
            self._warmed_up = True
        finally:
            self._warming = False
        return seconds

    @property
    def draining(self) -> bool:
        return self._draining

    def cards(self) -> list[ModelCard]:
        return [s.card for s in self._served.values()]

    def start(self) -> None:
        """Start the engine thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="darkroom-engine", daemon=True)
        self._thread.start()

    def submit(self, spec: GenerationSpec, on_progress: ProgressCallback | None = None) -> asyncio.Future[GenerationResult]:
        """Queue a validated request; raises QueueFull / Draining at once. Call from the event loop."""
        served = self._served.get(spec.model)
        if served is None:
            raise InvalidRequest(f"unknown model '{spec.model}'", field="model")
        f = served.model.family
        if spec.num_images * spec.width * spec.height > self.settings.max_batch_pixels:
            raise InvalidRequest(
                f"{spec.num_images} x {spec.width}x{spec.height} pixels is over the per-pass budget of "
                f"{self.settings.max_batch_pixels}",
                field="num_images",
            )
        if spec.num_images > self.settings.max_batch:
            raise InvalidRequest(f"'num_images' must be at most {self.settings.max_batch}", field="num_images")
        if spec.classifier_scale > 0 and (classifier_of(served.model) is None or spec.classifier_labels is None):
            raise InvalidRequest(
                f"'classifier_scale' > 0 needs model '{spec.model}' to have a classifier and the prompt's labels",
                field="classifier_scale",
            )
        if spec.decoder != "full" and (spec.decoder != "tiny" or served.model.tiny_vae is None):
            raise InvalidRequest(f"model '{spec.model}' has no {spec.decoder} decoder", field="decoder")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        latent = (f.latent_channels, spec.height // f.latent_factor, spec.width // f.latent_factor)
        work = Work(
            spec=spec,
            key=(spec.model, latent, spec.controlnet),
            loop=loop,
            future=loop.create_future(),
            on_progress=on_progress,
            arrival=now,
            deadline=now + spec.timeout_s,
        )
        with self._lock:
            if self._draining or self._stop:
                self.metrics.rejections.labels("draining").inc()
                raise Draining("the server is shutting down", retry_after_s=self.settings.retry_after_s)
            free_slots = max(0, self.settings.active_limit - self._active_count)
            if len(self._inbox) >= self.settings.max_queue + free_slots:
                self.metrics.rejections.labels("queue_full").inc()
                raise QueueFull(
                    f"the queue is full ({self.settings.max_queue} waiting)", retry_after_s=self._retry_after_s()
                )
            self._inbox.append(work)
            self._by_id[spec.id] = work
            self.metrics.queue_depth.set(len(self._inbox))
            self._wake.notify()
        # DEBUG: the one INFO line of a request is its outcome ("done" carries what was asked)
        log.debug("request %s queued", spec.id)
        return work.future

    def _retry_after_s(self) -> int:
        """Seconds until the queue has likely moved on: its depth x recent latency / slots (<= 60)."""
        estimate = len(self._inbox) * self._latency_ema_s / self.settings.active_limit
        return int(min(60, max(self.settings.retry_after_s, math.ceil(estimate))))

    def cancel(self, request_id: str) -> bool:
        """Cancel a queued or running request; it leaves at the engine's next step. Thread-safe."""
        with self._lock:
            work = self._by_id.get(request_id)
            if work is None:
                return False
            work.cancelled = True
            if work in self._inbox:
                self._inbox.remove(work)
                self.metrics.queue_depth.set(len(self._inbox))
                self._by_id.pop(request_id, None)
                self._resolve_error(work, Cancelled("the request was cancelled"), reason="cancelled")
            self._wake.notify()
        return True

    def begin_drain(self) -> None:
        """Refuse new requests (readiness turns 503); in-flight ones finish."""
        with self._lock:
            self._draining = True
            self._wake.notify()

    def drain(self, timeout_s: float) -> bool:
        """Refuse new work and wait until every queued and running request is resolved."""
        self.begin_drain()
        end = time.monotonic() + timeout_s
        with self._lock:
            while self._by_id and time.monotonic() < end:
                self._wake.wait(timeout=min(0.05, max(0.0, end - time.monotonic())))
            return not self._by_id

    def stop(self) -> None:
        """Stop the engine thread; anything unresolved fails with 503."""
        with self._lock:
            self._stop = True
            self._draining = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            leftover = list(self._by_id.values())
            self._by_id.clear()
            self._inbox.clear()
        for work in leftover:
            self._resolve_error(work, Unavailable("the server stopped", retry_after_s=self.settings.retry_after_s), "stopped")
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=True)
        self._encoder_pool.shutdown(wait=True)

    @property
    def active_count(self) -> int:
        with self._lock:
            return self._active_count

    @property
    def queue_depth(self) -> int:
        with self._lock:
            return len(self._inbox)

    # -- resolving futures from any thread ----------------------------------------------------

    def _resolve_error(self, work: Work, error: DarkroomError, reason: str) -> None:
        self.metrics.rejections.labels(reason).inc()
        log.info("request %s failed: %s", work.spec.id, error.code)

        def settle() -> None:
            if not work.future.done():
                work.future.set_exception(error)

        self._call_in_loop(work, settle)

    def _resolve_result(self, work: Work, result: GenerationResult) -> None:
        def settle() -> None:
            if not work.future.done():
                work.future.set_result(result)

        self._call_in_loop(work, settle)

    def _call_in_loop(self, work: Work, fn: Callable[[], None]) -> None:
        """Run fn on the request's event loop, in order. Calls that arrive while one wake-up of
        that loop is pending ride along with it: one call_soon_threadsafe (a write to the loop's
        self-pipe and one loop iteration) per burst of finished requests, not one per request."""
        loop = work.loop
        with self._settle_lock:
            queued = self._to_settle.setdefault(loop, [])
            queued.append(fn)
            if len(queued) > 1:
                return  # a wake-up is already on its way
        try:
            loop.call_soon_threadsafe(self._settle, loop)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            with self._settle_lock:
                self._to_settle.pop(loop, None)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`: everything queued for it by _call_in_loop."""
        with self._settle_lock:
            queued = self._to_settle.pop(loop, [])
        for fn in queued:
            try:
                fn()
            except Exception:  # one callback's bug must not strand the others
                log.exception("a callback on the event loop failed")

    def _forget(self, work: Work) -> None:
        with self._lock:
            self._by_id.pop(work.spec.id, None)
            self._wake.notify_all()

    # -- the engine thread --------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._lock:
                while not self._stop and not self._inbox and not self._active:
                    self._wake.wait(timeout=0.5)
                if self._stop:
                    break
                arrivals = self._take_arrivals()
            try:
                self._step(arrivals)
            except Exception:  # a bug in the engine itself: fail what is in flight, keep serving
                log.exception("engine iteration failed")
                decoding = [w for works, *_ in self._pending_decodes for w in works]
                self._pending_decodes = []
                for work in list(self._active) + arrivals + decoding:
                    self._fail(work, GenerationFailed("internal engine error"), "engine_error")
                self._active = []
                self._sync_active_count()

    def _take_arrivals(self) -> list[Work]:
        """Move queued requests into the active set while slots are free (caller holds _lock)."""
        arrivals: list[Work] = []
        now = time.monotonic()
        while self._inbox and len(self._active) + len(arrivals) < self.settings.active_limit:
            work = self._inbox.popleft()
            if now > work.deadline:
                self._by_id.pop(work.spec.id, None)
                self._resolve_error(work, DeadlineExceeded("the request waited past its deadline"), "deadline")
                continue
            arrivals.append(work)
        self.metrics.queue_depth.set(len(self._inbox))
        return arrivals

    def _step(self, arrivals: list[Work]) -> None:
        """One iteration: admit, reap, schedule, execute, update, finish."""
        if arrivals:
            self._admit(arrivals)
        self._reap()
        batch = self.schedule()
        if batch is not None:
            outcome = self.execute(batch)
            self.update(batch, outcome)
            self.iterations += 1
        self._complete_decodes()  # the previous step's (decode_pipeline), now that this step's pass is queued
        self._finish_done()
        if self._pending_decodes and not self._active and not self._inbox:
            self._complete_decodes()  # nothing left to overlap them with

    def _sync_active_count(self) -> None:
        with self._lock:
            self._active_count = len(self._active)
            self.metrics.active_requests.set(self._active_count)
            self._wake.notify_all()

    def _fail(self, work: Work, error: DarkroomError, reason: str) -> None:
        gen = work.generator
        if gen is not None:
            try:
                gen.close()  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001 - a sampler's cleanup may raise anything
                log.debug("closing the sampler of request %s raised %s", work.spec.id, type(e).__name__)
        work.generator = None
        work.pending = None
        self._forget(work)
        self._resolve_error(work, error, reason)

    # -- admit --------------------------------------------------------------------------------

    def _admit(self, arrivals: list[Work]) -> None:
        """Encode the arrivals' prompts (batched per model, cached) and start their samplers."""
        now = time.monotonic()
        live = []
        for work in arrivals:
            if work.cancelled:
                self._fail(work, Cancelled("the request was cancelled"), "cancelled")
            else:
                live.append(work)
        by_model: dict[str, list[Work]] = collections.defaultdict(list)
        for work in live:
            by_model[work.spec.model].append(work)
        for model_id, works in by_model.items():
            texts = self._encode_prompts(model_id, works)
            for work in works:
                if work.spec.id not in texts:
                    continue
                try:
                    self._start_sampler(work, *texts[work.spec.id])
                except DarkroomError as e:
                    self._fail(work, e, e.code)
                    continue
                except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
                    log.warning("request %s could not start: %s", work.spec.id, type(e).__name__)
                    if is_out_of_memory(e):
                        self._fail(work, OutOfMemory("out of memory while starting; try a smaller size"), "out_of_memory")
                    else:
                        self._fail(work, GenerationFailed(f"could not start the sampler: {type(e).__name__}"), "model_error")
                    continue
                work.started = now
                work.last_served = work.arrival
                self._active.append(work)
        self._sync_active_count()

    def _encode_prompts(
        self, model_id: str, works: list[Work]
    ) -> dict[str, tuple[Conditioning, Conditioning, bool]]:
        """request id -> (cond row, uncond row, truncated); failures are resolved here."""
        served = self._served[model_id]
        encoder = served.model.text_encoder
        out: dict[str, tuple[Conditioning, Conditioning, bool]] = {}
        if encoder is None:  # class-conditional (DiT): the prompt is a class id, validated already
            null_class = int(served.card.num_classes or 0)
            for work in works:
                label = torch.tensor([int(work.spec.prompt)])
                out[work.spec.id] = (
                    Conditioning(class_labels=label), Conditioning(class_labels=torch.tensor([null_class])), False
                )
            return out
        wanted = []
        for work in works:
            for prompt in (work.spec.prompt, work.spec.negative_prompt):
                if self._text_cache.get((model_id, prompt)) is None and prompt not in wanted:
                    wanted.append(prompt)
        if wanted:
            try:
                self._encode_into_cache(model_id, encoder, wanted)
            except Exception:  # noqa: BLE001 - model code may raise anything; contain it
                # one prompt at a time, so only the prompts that fail alone fail their requests
                for prompt in wanted:
                    try:
                        self._encode_into_cache(model_id, encoder, [prompt])
                    except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
                        log.warning("text encoder failed for one prompt: %s", type(e).__name__)
        zero_empty = bool(getattr(encoder, "zero_empty_negative", False))
        for work in works:
            cond = self._text_cache.get((model_id, work.spec.prompt))
            uncond = self._text_cache.get((model_id, work.spec.negative_prompt))
            if cond is None or uncond is None:
                self._fail(work, GenerationFailed("the text encoder failed on this prompt"), "model_error")
                continue
            uncond_row = _zero_text(uncond[0]) if zero_empty and work.spec.negative_prompt == "" else uncond[0]
            out[work.spec.id] = (cond[0], uncond_row, cond[1] or uncond[1])
        return out

    def _encode_into_cache(self, model_id: str, encoder: object, prompts: list[str]) -> None:
        cond, truncated = encoder.encode(prompts)  # type: ignore[attr-defined]
        for i, prompt in enumerate(prompts):
            # a copy, not a view: a cached row must not keep its whole encoder batch alive
            row = Conditioning(**{f.name: None if (t := getattr(cond, f.name)) is None else t[i : i + 1].clone()
                                  for f in fields(Conditioning)})
            self._text_cache.put((model_id, prompt), (row, bool(truncated[i])))

    def _start_sampler(self, work: Work, cond_row: Conditioning, uncond_row: Conditioning, truncated: bool) -> None:
        """Initial latents from the request's seed (img2img: its image at the start sigma) and its generator."""

        spec = work.spec
        model = self._served[spec.model].model
        denoiser = model.denoiser
        n = spec.num_images
        _, (c, h, w), _ = work.key
        device = model.device
        cond = self._size_conditioning(cond_row, spec)
        uncond = self._size_conditioning(uncond_row, spec)
        if n > 1:  # repeat(1) would only copy: rows are never written in place, they go through torch.cat
            cond, uncond = cond.repeat(n), uncond.repeat(n)
        if spec.control_image is not None:
            control = torch.from_numpy(spec.control_image).permute(2, 0, 1)[None].float().div(255)
            control = control.expand(n, -1, -1, -1)  # (n, 3, H, W) in [0, 1]
            control_scale = torch.full((n,), spec.control_scale)
            cond = replace(cond, control_image=control, control_scale=control_scale)
            uncond = replace(uncond, control_image=control, control_scale=control_scale)
        cond, uncond = cond.to(device), uncond.to(device)
        # w <= 1 means no guidance (diffusers' convention, as pipelines.text_to_image): no uncond pass
        guidance_scale = max(1.0, spec.guidance)
        work.guided = GuidedConditioning(
            cond=cond,
            uncond=uncond,
            guidance_scale=torch.full((n,), guidance_scale, dtype=torch.float32, device=device),
            guide=torch.ones((n,), dtype=torch.bool, device=device),
            **self._classifier_rows(model, spec),
        )
        # the same draws, in the same order, as pipelines.text_to_image: an engine image equals
        # the one-request path's for the same seed
        generator = torch.Generator(device="cpu").manual_seed(spec.seed)
        sigmas = self._sampling_sigmas(model, spec.sampler, spec.steps)
        if spec.init_image is not None:
            # SDEdit (Meng et al. 2022, sec. 3): x = x0_init + sigma_start * eps, skipping the
            # first (1 - strength) of the steps as diffusers' get_timesteps does
            used = min(int(spec.steps * spec.strength), spec.steps)
            if used < 1:
                raise InvalidRequest("strength x steps must be at least one step", field="strength")
            sigmas = sigmas[spec.steps - used :]
            image = torch.from_numpy(spec.init_image).permute(2, 0, 1)[None].float().div(255)  # (1, 3, H, W)
            x0_init = model.vae.encode(image.to(device), generator=generator).float()  # (1, C, h, w)
            eps = to_device(torch.randn((n, c, h, w), generator=generator, dtype=torch.float32), device)
            x = x0_init + float(sigmas[0]) * eps
        else:
            eps = to_device(torch.randn((n, c, h, w), generator=generator, dtype=torch.float32), device)
            x = eps * denoiser.prior_scale(float(sigmas[0]))
        work.sigmas = sigmas
        work.evals_total = self._evals_total(spec.sampler, len(sigmas) - 1)
        work.prompt_truncated = truncated
        work.generator = make_sampler(spec.sampler, x, sigmas, seeded_noise(x, generator))
        work.pending = next(work.generator)  # type: ignore[call-overload]

    def _sampling_sigmas(self, model: LoadedModel, sampler: str, steps: int) -> Tensor:
        """pipelines.text_to_image.sampling_sigmas, cached: a copy per request (the samplers own theirs)."""
        key = (model.id, sampler, steps)
        sigmas = self._sigmas.get(key)
        if sigmas is None:
            sigmas = self._sigmas[key] = sampling_sigmas(model, sampler, steps)
        return sigmas.clone()

    @staticmethod
    def _classifier_rows(model: LoadedModel, spec: GenerationSpec) -> dict[str, Tensor]:
        """Classifier-guidance scale (n,) and labels (n, heads) of a request's rows.

        Every row of a model served with a classifier carries them (scale 0 and zero labels when
        the request does not ask), so requests with and without classifier guidance share passes.
        """
        classifier = classifier_of(model)
        if classifier is None:
            return {}
        n = spec.num_images
        labels = spec.classifier_labels if spec.classifier_labels is not None else (0,) * classifier.heads
        return {
            "classifier_scale": torch.full((n,), spec.classifier_scale, dtype=torch.float32, device=model.device),
            "classifier_labels": torch.tensor([labels], dtype=torch.long, device=model.device).expand(n, -1),
        }

    @staticmethod
    def _size_conditioning(cond: Conditioning, spec: GenerationSpec) -> Conditioning:
        """SDXL micro-conditioning for this request's size (the cache holds size-free rows)."""
        if cond.time_ids is None:
            return cond
        return replace(cond, time_ids=sdxl_time_ids((spec.height, spec.width), cond.batch_size).to(cond.time_ids))

    @staticmethod
    def _evals_total(sampler: str, steps: int) -> int:
        return steps * SAMPLERS[sampler].evaluations_per_step  # at most: Heun's last step takes one

    # -- reap ---------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Drop cancelled and expired requests before they take another model call."""
        now = time.monotonic()
        keep = []
        for work in self._active:
            if work.cancelled:
                self._fail(work, Cancelled("the request was cancelled"), "cancelled")
            elif now > work.deadline:
                self._fail(work, DeadlineExceeded("the request ran past its deadline"), "deadline")
            else:
                keep.append(work)
        if len(keep) != len(self._active):
            self._active = keep
            self._sync_active_count()

    # -- schedule -----------------------------------------------------------------------------

    def schedule(self) -> ScheduledBatch | None:
        """The class of the longest-waiting pending call, and its requests that fit one pass."""
        ready = [w for w in self._active if w.pending is not None]
        if not ready:
            return None
        ready.sort(key=lambda w: (w.last_served, w.arrival))
        key = ready[0].key
        pixels_per_row = key[1][1] * key[1][2] * self._served[key[0]].model.family.latent_factor ** 2
        members, rows = [], 0
        for work in ready:
            if work.key != key:
                continue
            n = work.spec.num_images
            if rows + n > self.settings.max_batch or (rows + n) * pixels_per_row > self.settings.max_batch_pixels:
                continue
            members.append(work)
            rows += n
        return ScheduledBatch(key=key, members=members, rows=rows)

    # -- execute ------------------------------------------------------------------------------

    def execute(self, batch: ScheduledBatch) -> BatchOutcome:
        """One guided forward pass over the batch; on failure, retry so only the culprits fail."""
        outcome = BatchOutcome()
        self._execute_into(batch.members, outcome, split_cause=None)
        return outcome

    def _execute_into(self, members: list[Work], outcome: BatchOutcome, split_cause: str | None) -> None:
        try:
            x0 = self._forward(members)
        except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
            if is_out_of_memory(e):
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if len(members) == 1:
                    outcome.errors[id(members[0])] = OutOfMemory(
                        "out of memory even alone; try a smaller size or fewer images", code="out_of_memory"
                    )
                    return
                self.metrics.retries.labels("out_of_memory").inc()
                half = len(members) // 2
                self._execute_into(members[:half], outcome, "out_of_memory")
                self._execute_into(members[half:], outcome, "out_of_memory")
                return
            if len(members) == 1:
                log.warning("model call failed for request %s: %s", members[0].spec.id, type(e).__name__)
                outcome.errors[id(members[0])] = GenerationFailed(f"the model failed: {type(e).__name__}")
                return
            self.metrics.retries.labels("model_error").inc()
            for work in members:  # each alone: the request that fails alone is the culprit
                self._execute_into([work], outcome, "model_error")
            return
        start = 0
        for work in members:
            n = work.spec.num_images
            outcome.x0[id(work)] = x0[start : start + n]
            start += n

    def _forward(self, members: list[Work]) -> Tensor:
        """Concatenate the members' pending rows, pad to a bucket, run the guided denoiser once."""
        xs, sigma_rows, conds = [], [], []
        for work in members:
            assert work.pending is not None and work.guided is not None
            x, sigma = work.pending
            n = x.shape[0]
            xs.append(x)
            sigma_rows.append(sigma.to(torch.float64).reshape(1).expand(n))
            conds.append(self._guided_at(work, float(sigma)))
        x = torch.cat(xs)  # (rows, C, h, w)
        sigma = to_device(torch.cat(sigma_rows), x.device)  # (rows,) float64: each row at its own step
        cond = GuidedConditioning.cat(conds)
        rows = x.shape[0]
        pad = self.settings.pad_to_bucket
        if pad is None:
            pad = x.device.type == "cuda"
        padded = bucket_size(rows, self.settings.max_batch) if pad else rows
        if padded > rows:
            # padding repeats the last real row: valid inputs whose outputs are dropped
            index = to_device(torch.cat([torch.arange(rows), torch.full((padded - rows,), rows - 1)]), x.device)
            x, sigma, cond = x[index], sigma[index], cond.rows(index)
        guided = self._guided_forward(members[0].key)
        started = time.perf_counter()
        x0 = guided(x, sigma, cond)
        self.metrics.step_latency.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(rows)
        self.metrics.batch_requests.observe(len(members))
        return x0[:rows]

    def _guided_forward(self, key: ClassKey) -> GuidedForward:
        """The guided denoiser of a class: the model's, with the class's ControlNet attached."""
        served = self._served[key[0]]
        controlnet = key[2]
        forward = served.guided.get(controlnet)
        if forward is None:
            denoiser: Denoiser = served.model.denoiser
            if controlnet is not None:
                denoiser = served.model.denoiser.with_controlnet(served.model.controlnets[controlnet])  # type: ignore[attr-defined]
            forward = self._guidance(denoiser)  # type: ignore[misc]
            classifier = classifier_of(served.model)
            if classifier is not None:  # rows with classifier_scale 0 pass through untouched
                forward = classifier_guidance(forward, classifier.network)
            served.guided[controlnet] = forward
        return forward

    @staticmethod
    def _guided_at(work: Work, sigma: float) -> GuidedConditioning:
        """The request's guided conditioning at this sigma (guidance interval applied)."""
        g = work.guided
        assert g is not None
        interval = work.spec.guidance_interval
        if interval is None:
            return g
        lo, hi = interval
        inside = lo <= sigma <= hi  # pipelines.guidance.in_guidance_interval
        assert g.guide is not None
        return replace(g, guide=torch.full_like(g.guide, inside))

    # -- update -------------------------------------------------------------------------------

    def update(self, batch: ScheduledBatch, outcome: BatchOutcome) -> None:
        """Send each request its x0 slice; failed ones leave; finished ones await decoding."""
        now = time.monotonic()
        failed = []
        for work in batch.members:
            error = outcome.errors.get(id(work))
            if error is not None:
                failed.append((work, error))
                continue
            x0 = outcome.x0[id(work)]
            work.evals_done += 1
            work.last_served = now
            self._report_progress(work, x0)
            try:
                work.pending = work.generator.send(x0)  # type: ignore[attr-defined]
            except StopIteration as stop:
                work.final_x = stop.value
                work.pending = None
                work.denoise_s = time.monotonic() - work.started
            except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
                log.warning("sampler failed for request %s: %s", work.spec.id, type(e).__name__)
                failed.append((work, GenerationFailed(f"the sampler failed: {type(e).__name__}")))
        if failed:
            for work, error in failed:
                self._fail(work, error, error.code)
            gone = {id(w) for w, _ in failed}
            self._active = [w for w in self._active if id(w) not in gone]
            self._sync_active_count()

    def _report_progress(self, work: Work, x0: Tensor) -> None:
        if work.on_progress is None:
            return
        preview = None
        every = self.settings.preview_every
        if work.spec.preview and every > 0 and (work.evals_done % every == 0 or work.evals_done == 1):
            try:
                preview = preview_png(_latent_preview(x0[0]), self.settings.preview_max_side)
            except Exception:  # noqa: BLE001 - model code may raise anything; contain it
                preview = None
        progress = Progress(step=work.evals_done, total=max(work.evals_total, work.evals_done), preview_png=preview)
        callback = work.on_progress
        # through the same ordered queue as the result, so a progress event never lands after it
        self._call_in_loop(work, lambda: callback(progress))

    # -- finish: batched decode, then encoding off the engine thread ---------------------------

    def _finish_done(self) -> None:
        done = [w for w in self._active if w.pending is None and w.final_x is not None]
        if not done:
            return
        self._active = [w for w in self._active if not (w.pending is None and w.final_x is not None)]
        self._sync_active_count()
        groups: dict[tuple[str, tuple[int, int, int], str], list[Work]] = collections.defaultdict(list)
        for work in done:  # one decode per model, latent shape and decoder
            groups[(work.key[0], work.key[1], work.spec.decoder)].append(work)
        for group in groups.values():
            model = self._served[group[0].spec.model].model
            if self.settings.decode_overlap and torch.device(model.device).type == "cuda":
                self._decode_behind(model, group)
            elif self.settings.decode_pipeline:
                self._launch_decode(group)
            else:
                self._decode_group(group)

    def _launch_decode(self, works: list[Work]) -> None:
        """settings.decode_pipeline: queue one group's decode and its finiteness reduction without
        waiting for them; _complete_decodes does the rest after the next forward pass is queued."""
        model = self._served[works[0].spec.model].model
        started = time.perf_counter()
        try:
            images = _decoder(model, works[0]).decode(torch.cat([self._decoder_input(model, w) for w in works]))
            finite = torch.isfinite(images).all()
        except Exception:  # noqa: BLE001 - model code may raise anything; the inline path sorts it out
            self._decode_group(works)
            return
        self._pending_decodes.append((works, images, finite, started))

    def _complete_decodes(self) -> None:
        """Wait for the launched decodes (the first host read of each), then check, encode and hand off."""
        while self._pending_decodes:
            works, images, finite, started = self._pending_decodes.pop(0)
            try:
                all_finite = bool(finite)  # an asynchronous failure of the decode surfaces here
            except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
                log.warning("decode failed for %d request(s): %s", len(works), type(e).__name__)
                for work in works:
                    self._fail(work, GenerationFailed(f"the VAE decode failed: {type(e).__name__}"), "model_error")
                continue
            model = self._served[works[0].spec.model].model
            self._finish_decoded(model, works, images, all_finite, (time.perf_counter() - started) / len(works))

    def _decode_behind(self, model: LoadedModel, works: list[Work]) -> None:
        """Hand a group to the decode thread, which decodes on its own stream while denoising goes on.

        The latents are gathered here on the engine's stream; the decode stream waits for an event
        recorded after them, and `record_stream` keeps their memory from being reused by the
        engine's stream before the decode has read them.
        """
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(1, thread_name_prefix="darkroom-decode")
            self._decode_stream = torch.cuda.Stream(device=model.device)
        try:
            latents = torch.cat([self._decoder_input(model, w) for w in works])
        except Exception:  # noqa: BLE001 - model code may raise anything; the inline path sorts it out
            self._decode_group(works)
            return
        ready = torch.cuda.Event()
        ready.record()
        self._decode_pool.submit(self._decode_on_stream, works, latents, ready)

    def _decode_on_stream(self, works: list[Work], latents: Tensor, ready: torch.cuda.Event) -> None:
        """The decode thread: one group's decode and encode on the decode stream."""
        stream = self._decode_stream
        assert stream is not None
        try:
            stream.wait_event(ready)
            latents.record_stream(stream)
            with torch.cuda.stream(stream), torch.no_grad():
                self._decode_group(works, latents)
        except Exception:  # a bug here must not leave the group's requests waiting forever
            log.exception("decode thread failed")
            for work in works:
                self._fail(work, GenerationFailed("internal decode error"), "engine_error")

    def _decode_group(self, works: list[Work], latents: Tensor | None = None) -> None:
        """One batched VAE decode for requests of one model and latent shape."""
        model = self._served[works[0].spec.model].model
        started = time.perf_counter()
        try:
            if latents is None:
                latents = torch.cat([self._decoder_input(model, w) for w in works])
            images = _decoder(model, works[0]).decode(latents)  # (rows, 3, H, W) in [0, 1]
        except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
            if len(works) > 1:
                for work in works:
                    self._decode_group([work])
                return
            cause = "out_of_memory" if is_out_of_memory(e) else "model_error"
            log.warning("decode failed for request %s: %s", works[0].spec.id, type(e).__name__)
            error = OutOfMemory("out of memory in the VAE decode") if cause == "out_of_memory" else GenerationFailed(
                f"the VAE decode failed: {type(e).__name__}"
            )
            self._fail(works[0], error, cause)
            return
        decode_s = (time.perf_counter() - started) / len(works)
        # one check for the whole decode; per request only when some image is not finite
        self._finish_decoded(model, works, images, bool(torch.isfinite(images).all()), decode_s)

    def _finish_decoded(self, model: LoadedModel, works: list[Work], images: Tensor, all_finite: bool,
                        decode_s: float) -> None:
        """Split one group's decoded images by request (an fp32 retry for a request with NaN/Inf), then encode."""
        start = 0
        finished: list[tuple[Work, Tensor]] = []
        for work in works:
            n = work.spec.num_images
            rows = images[start : start + n]
            start += n
            if not all_finite and not bool(torch.isfinite(rows).all()):
                retried = self._decode_fp32(model, work)
                if retried is None:
                    self._fail(
                        work,
                        GenerationFailed("the model produced NaN/Inf output, also with an fp32 VAE decode", code="nan_output"),
                        "nan_output",
                    )
                    continue
                rows = retried
            finished.append((work, rows))
        self._encode_finished(finished, decode_s)

    def _gpu_encodable(self, work: Work, rows: Tensor) -> bool:
        """JPEG rows of a CUDA model go to nvJPEG (settings.gpu_encode)."""
        return self.settings.gpu_encode and rows.is_cuda and work.spec.output_format == "jpeg"

    def _encode_finished(self, finished: list[tuple[Work, Tensor]], decode_s: float) -> None:
        """JPEG rows of a CUDA model in one nvJPEG call (settings.gpu_encode); the rest on the encoder pool."""
        on_gpu = [(w, r) for w, r in finished if self._gpu_encodable(w, r)]
        by_quality: dict[int | None, list[tuple[Work, Tensor]]] = collections.defaultdict(list)
        for work, rows in on_gpu:
            by_quality[work.spec.quality].append((work, rows))
        encoded_on_gpu: set[int] = set()
        for quality, group in by_quality.items():
            started = time.perf_counter()
            try:
                encoded = encode_jpeg_cuda(torch.cat([_pixels_to_uint8_chw(rows) for _, rows in group]), quality)
            except Exception:  # noqa: BLE001 - e.g. out of memory for the uint8 copy: Pillow below
                encoded = None
            if encoded is None:
                continue  # no nvJPEG here: Pillow on the pool below
            encode_s = (time.perf_counter() - started) / len(group)
            start = 0
            for work, rows in group:
                n = rows.shape[0]
                # the bytes are ready: resolve here, a hop through the pool would only add work
                self._resolve_encoded(work, encoded[start : start + n], decode_s, encode_s)
                start += n
                encoded_on_gpu.add(id(work))
        on_pool = [(w, r) for w, r in finished if id(w) not in encoded_on_gpu]
        if not on_pool:
            return
        # one uint8 conversion and host copy for the group, (rows, H, W, 3); a request gets its slice
        pixels = _pixels_to_uint8(torch.cat([rows for _, rows in on_pool]))
        start = 0
        for work, rows in on_pool:
            n = rows.shape[0]
            self._encoder_pool.submit(self._encode_and_resolve, work, pixels[start : start + n], decode_s)
            start += n

    def _decoder_input(self, model: LoadedModel, work: Work) -> Tensor:
        assert work.final_x is not None and work.sigmas is not None
        return model.denoiser.to_decoder_input(work.final_x, float(work.sigmas[-1]))

    def _decode_fp32(self, model: LoadedModel, work: Work) -> Tensor | None:
        """The one retry for non-finite images: decode again with an fp32 VAE (pipelines.vae)."""
        self.metrics.retries.labels("nan_output").inc()
        vae = _decoder(model, work)
        try:
            latents = self._decoder_input(model, work).float()
            if "force_fp32" in inspect.signature(vae.decode).parameters:
                images = vae.decode(latents, force_fp32=True)  # type: ignore[call-arg]
            else:
                images = vae.decode(latents)
        except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
            log.warning("fp32 decode failed for request %s: %s", work.spec.id, type(e).__name__)
            return None
        return images if bool(torch.isfinite(images).all()) else None

    def _encode_and_resolve(self, work: Work, pixels: np.ndarray, decode_s: float) -> None:
        """On the encoder pool: PNG/JPEG/WebP bytes with Pillow, then the future's result."""
        spec = work.spec
        try:
            started = time.perf_counter()
            images = [encode_image(p, spec.output_format, spec.quality) for p in pixels]
            encode_s = time.perf_counter() - started
        except Exception as e:  # noqa: BLE001 - model code may raise anything; contain it
            self._forget(work)
            self._resolve_error(work, GenerationFailed(f"image encoding failed: {type(e).__name__}"), "encode_error")
            return
        self._resolve_encoded(work, images, decode_s, encode_s)

    def _resolve_encoded(self, work: Work, images: list[bytes], decode_s: float, encode_s: float) -> None:
        """The request's result from its encoded images (any thread)."""
        spec = work.spec
        total_s = time.monotonic() - work.arrival
        result = GenerationResult(
            id=spec.id,
            images=images,
            output_format=spec.output_format,
            seed=spec.seed,
            model=spec.model,
            sampler=spec.sampler,
            steps=spec.steps,
            guidance=spec.guidance,
            width=spec.width,
            height=spec.height,
            prompt_truncated=work.prompt_truncated,
            timings={
                "queue_s": work.started - work.arrival,
                "denoise_s": work.denoise_s,
                "decode_s": decode_s,
                "encode_s": encode_s,
                "total_s": total_s,
            },
        )
        self.metrics.images_served.labels(spec.model).inc(len(images))
        self.metrics.request_latency.observe(total_s)
        self._latency_ema_s = total_s if self._latency_ema_s == 0 else 0.9 * self._latency_ema_s + 0.1 * total_s
        log.info(
            "request %s done: model=%s %dx%d n=%d sampler=%s steps=%d in %.3fs",
            spec.id, spec.model, spec.width, spec.height, len(images), spec.sampler, spec.steps, total_s,
        )
        self._forget(work)
        self._resolve_result(work, result)


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> float16 on CUDA, float32 on CPU."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float32": torch.float32, "fp32": torch.float32}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}; one of {', '.join(table)}")
    return table[name]


def build_engine(settings: Settings, metrics: Metrics | None = None) -> Engine:
    """The engine over the models the settings name (server.models.load_served_models)."""
    from server.models import load_served_models

    models, _ = load_served_models(settings)
    return Engine(models, settings, metrics)
