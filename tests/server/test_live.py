"""A live uvicorn server on 127.0.0.1 (in a thread): real client disconnects, and bench/load.py."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from pipelines.model import LoadedModel
from server.app import create_app
from server.engine import Engine
from server.settings import Settings
from tests.server.conftest import until
from tests.server.known_model import known_model

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def live_server(model: LoadedModel | None = None, **settings: object) -> Iterator[tuple[str, Engine]]:
    config = Settings(**{"max_batch": 8, "drain_timeout_s": 5.0, **settings})  # type: ignore[arg-type]
    engine = Engine([model or known_model()], config)
    server = uvicorn.Server(uvicorn.Config(create_app(config, engine), host="127.0.0.1", port=0,
                                           log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.anyio
async def test_a_client_that_hangs_up_frees_its_slot() -> None:
    with live_server(max_active=1, max_queue=0) as (url, engine):
        denoiser = engine._served["known"].model.denoiser
        gate = threading.Event()
        denoiser.gate = gate
        async with httpx.AsyncClient(base_url=url) as client:
            doomed = asyncio.create_task(client.post("/generate", json={"prompt": "long", "steps": 200}))
            await until(denoiser.entered.is_set)
            doomed.cancel()  # the client hangs up mid-request: its connection closes
        # the server notices the closed connection and marks the request cancelled in the engine
        await until(lambda: all(w.cancelled for w in engine._by_id.values()), timeout_s=10)
        denoiser.gate = None
        gate.set()
        await until(lambda: engine.active_count == 0 and engine.queue_depth == 0, timeout_s=10)
        assert len(denoiser.calls) <= 2
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/generate", json={"prompt": "next", "steps": 2})
            assert response.status_code == 200
            assert "darkroom_rejections_total{reason=\"cancelled\"} 1.0" in (await client.get("/metrics")).text


def bench_load() -> object:
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    assert spec is not None and spec.loader is not None
    load = importlib.util.module_from_spec(spec)
    sys.modules["bench_load"] = load  # dataclasses look their module up there
    spec.loader.exec_module(load)
    return load


@pytest.mark.anyio
async def test_bench_load_reports_latency_and_throughput() -> None:
    load = bench_load()
    with live_server() as (url, _):
        closed = await load.run(load.parse_args(["--url", url, "--mode", "closed", "--concurrency", "4",
                                                 "--requests", "12", "--steps", "3"]))
        assert (closed.requests, closed.ok, closed.failures) == (12, 12, {})
        assert closed.latency_p50_s <= closed.latency_p99_s and closed.images_per_s > 0
        assert closed.model == "known"
        opened = await load.run(load.parse_args(["--url", url, "--mode", "open", "--rate", "20",
                                                 "--duration", "0.5", "--steps", "2", "--num-images", "2"]))
        assert opened.ok == opened.requests >= 1 and opened.failures == {}
        assert opened.images_per_s * opened.wall_s == pytest.approx(2 * opened.ok)
    assert load.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


@pytest.mark.anyio
async def test_bench_load_waits_for_a_warming_server() -> None:
    """The load generator starts only once /readyz is 200: a server still warming up answers 503."""
    load = bench_load()
    model = known_model()
    gate = threading.Event()
    model.denoiser.gate = gate  # the warm-up's first pass waits here
    with live_server(model, warm_up=True, max_batch=2, pad_to_bucket=True) as (url, engine):
        task = asyncio.create_task(load.run(load.parse_args(["--url", url, "--requests", "4", "--concurrency", "2",
                                                             "--steps", "2", "--warmup", "0"])))
        await until(lambda: engine.warming)
        await asyncio.sleep(0.3)
        assert not task.done()
        gate.set()
        report = await asyncio.wait_for(task, timeout=20)
        assert (report.requests, report.ok, report.failures) == (4, 4, {})
        with pytest.raises(SystemExit, match="not ready"):
            async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
                await load.until_ready(client, 0.0)
