"""Asynchronous jobs (/v1/jobs): a generation that outlives its HTTP request, with an event stream.

Runs on the event loop only. Each job keeps its latest state and fans events out to any number
of subscribers (the SSE streams): `progress` (step, total, optional preview), then exactly one of
`result`, `error` or `cancelled`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.errors import Cancelled, DarkroomError, GenerationFailed
from server.generation import GenerationResult, GenerationSpec, Progress
from server.images import b64
from server.schemas import ErrorBody, GenerateResponse, JobState, JobStatus

TERMINAL: tuple[JobState, ...] = ("succeeded", "failed", "cancelled")


@dataclass
class Event:
    """One server-sent event of a job."""

    name: str  # "progress" | "result" | "error" | "cancelled"
    data: dict[str, Any]


@dataclass(eq=False)
class Job:
    """A generation followed through /v1/jobs: its state, progress and subscribers."""

    spec: GenerationSpec
    created: float  # time.monotonic()
    status: JobState = "queued"
    step: int = 0
    total: int = 0
    result: GenerateResponse | None = None
    error: ErrorBody | None = None
    finished: float | None = None
    last_progress: Event | None = None
    subscribers: list[asyncio.Queue[Event]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    def view(self) -> JobStatus:
        return JobStatus(
            id=self.id, status=self.status, step=self.step, total=self.total, result=self.result, error=self.error
        )

    def publish(self, event: Event) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)

    def on_progress(self, progress: Progress) -> None:
        if self.status in TERMINAL:
            return
        self.status = "running"
        self.step, self.total = progress.step, progress.total
        data: dict[str, Any] = {"step": progress.step, "total": progress.total}
        if progress.preview_png is not None:
            data["preview_png"] = b64(progress.preview_png)
        self.last_progress = Event("progress", data)
        self.publish(self.last_progress)

    def final_event(self) -> Event | None:
        if self.status == "succeeded" and self.result is not None:
            return Event("result", self.result.model_dump(mode="json"))
        if self.status == "cancelled":
            return Event("cancelled", {"id": self.id})
        if self.status == "failed" and self.error is not None:
            return Event("error", {"error": self.error.model_dump(mode="json")})
        return None

    def settle(self, status: JobState, *, result: GenerateResponse | None = None, error: ErrorBody | None = None) -> None:
        if self.status in TERMINAL:
            return
        self.status, self.result, self.error = status, result, error
        self.finished = time.monotonic()
        if result is not None:
            self.step = self.total = max(self.step, self.total)
        final = self.final_event()
        assert final is not None
        self.publish(final)


def response_of(result: GenerationResult, num_images: int) -> GenerateResponse:
    """The JSON body of a finished generation (POST /generate and job results)."""
    return GenerateResponse.model_validate(
        {
            "id": result.id,
            "format": result.output_format,
            "images": [b64(image) for image in result.images],
            "metadata": {
                "seed": result.seed,
                "model": result.model,
                "sampler": result.sampler,
                "steps": result.steps,
                "guidance": result.guidance,
                "width": result.width,
                "height": result.height,
                "num_images": num_images,
                "prompt_truncated": result.prompt_truncated,
                "timings": result.timings,
            },
        }
    )


class JobStore:
    """Live and recently finished jobs; finished ones expire after `ttl_s` or beyond `max_jobs`."""

    def __init__(self, max_jobs: int, ttl_s: float) -> None:
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def add(self, spec: GenerationSpec, future_of: Callable[[Job], asyncio.Future[GenerationResult]]) -> Job:
        """Register a job and watch the engine future `future_of(job)` submits (may raise QueueFull)."""
        self._expire()
        job = Job(spec=spec, created=time.monotonic())
        future = future_of(job)
        self._jobs[job.id] = job
        job.task = asyncio.create_task(self._watch(job, future))
        return job

    async def _watch(self, job: Job, future: asyncio.Future[GenerationResult]) -> None:
        try:
            result = await future
        except Cancelled:
            job.settle("cancelled")
        except DarkroomError as e:
            job.settle("failed", error=ErrorBody(code=e.code, message=e.message, field=e.field))
        except asyncio.CancelledError:
            job.settle("cancelled")
            raise
        except Exception as e:  # noqa: BLE001 - an engine bug: the job fails cleanly, the server keeps going
            error = GenerationFailed(f"internal error: {type(e).__name__}", code="internal_error")
            job.settle("failed", error=ErrorBody(code=error.code, message=error.message, field=None))
        else:
            job.settle("succeeded", result=response_of(result, job.spec.num_images))

    def _expire(self) -> None:
        now = time.monotonic()
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for job in finished:
            if now - job.finished > self.ttl_s:  # type: ignore[operator]
                self._jobs.pop(job.id, None)
        finished = [j for j in self._jobs.values() if j.finished is not None]
        excess = len(self._jobs) + 1 - self.max_jobs  # room for the job being added
        for job in finished[: max(0, excess)]:
            self._jobs.pop(job.id, None)
