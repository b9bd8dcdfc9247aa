"""Fixtures: the app in-process (httpx + ASGITransport, lifespan run) over a known-output model."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from pipelines.model import LoadedModel
from server.app import create_app
from server.engine import Engine
from server.settings import Settings
from tests.server.known_model import known_model


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Served:
    client: httpx.AsyncClient
    engine: Engine
    model: LoadedModel
    settings: Settings

    @property
    def denoiser(self):  # type: ignore[no-untyped-def]
        return self.model.denoiser

    async def metric(self, name: str) -> float:
        """The value of one sample line of /metrics (0 when absent)."""
        text = (await self.client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def sample(self, pattern: str) -> float:
        """The value of the /metrics line matching a regex on its name and labels."""
        text = (await self.client.get("/metrics")).text
        for line in text.splitlines():
            if re.fullmatch(pattern, line.rsplit(" ", 1)[0]):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@asynccontextmanager
async def serve(model: LoadedModel | None = None, **settings: object) -> AsyncIterator[Served]:
    """The app with its engine running over `model` (default: the known-output model)."""
    model = model or known_model()
    config = Settings(**{"max_batch": 8, "max_queue": 16, "request_timeout_s": 60.0, "drain_timeout_s": 10.0,
                         **settings})  # type: ignore[arg-type]
    engine = Engine([model], config)
    app = create_app(config, engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://darkroom.test", timeout=60) as client:
            yield Served(client=client, engine=engine, model=model, settings=config)


async def until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait (polling) until predicate() holds; fails the test after timeout_s."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def gated_burst(s: Served, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body to /generate while the engine is held inside the first forward pass, so
    all of them are queued before the next pass; then release and return the responses in order."""
    gate = threading.Event()
    s.denoiser.gate = gate
    s.denoiser.entered.clear()
    tasks = [asyncio.create_task(s.client.post("/generate", json=bodies[0]))]
    await until(s.denoiser.entered.is_set)
    tasks += [asyncio.create_task(s.client.post("/generate", json=b)) for b in bodies[1:]]
    await until(lambda: s.engine.queue_depth == len(bodies) - 1)
    gate.set()
    s.denoiser.gate = None
    return list(await asyncio.gather(*tasks))
