"""Admission control: full queue, deadlines, cancellation (disconnect, job DELETE), draining."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.server.conftest import serve, until

pytestmark = pytest.mark.anyio


async def test_full_queue_answers_503_with_retry_after_at_once() -> None:
    async with serve(max_active=1, max_queue=1, retry_after_s=3) as s:
        gate = threading.Event()
        s.denoiser.gate = gate
        running = asyncio.create_task(s.client.post("/generate", json={"prompt": "a", "steps": 2}))
        await until(s.denoiser.entered.is_set)
        queued = asyncio.create_task(s.client.post("/generate", json={"prompt": "b", "steps": 2}))
        await until(lambda: s.engine.queue_depth == 1)
        calls = len(s.denoiser.calls)
        # the engine is blocked inside a forward pass: this answer cannot have waited for it
        response = await asyncio.wait_for(s.client.post("/generate", json={"prompt": "c"}), timeout=5)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.json()["error"]["code"] == "queue_full"
        assert len(s.denoiser.calls) == calls and not gate.is_set()
        jobs = await s.client.post("/v1/jobs", json={"prompt": "c"})
        assert jobs.status_code == 503 and jobs.headers["retry-after"] == "3"
        assert await s.sample(r'darkroom_rejections_total\{reason="queue_full"\}') == 2
        gate.set()
        assert (await running).status_code == 200
        assert (await queued).status_code == 200


async def test_disconnected_request_frees_its_slot() -> None:
    async with serve(max_active=1, max_queue=0) as s:
        gate = threading.Event()
        s.denoiser.gate = gate
        doomed = asyncio.create_task(s.client.post("/generate", json={"prompt": "long", "steps": 200}))
        await until(s.denoiser.entered.is_set)
        assert s.engine.active_count == 1
        # the slot is taken: another request is refused
        assert (await s.client.post("/generate", json={"prompt": "x"})).status_code == 503
        doomed.cancel()  # the client goes away mid-request
        with pytest.raises(asyncio.CancelledError):
            await doomed
        s.denoiser.gate = None
        gate.set()
        await until(lambda: s.engine.active_count == 0)
        calls = len(s.denoiser.calls)
        assert calls <= 2, "the cancelled request kept taking model calls"
        assert await s.sample(r'darkroom_rejections_total\{reason="cancelled"\}') == 1
        after = await s.client.post("/generate", json={"prompt": "x", "steps": 2})
        assert after.status_code == 200
        assert len(s.denoiser.calls) == calls + 2


async def test_deleted_job_frees_its_slot_and_reports_cancelled() -> None:
    async with serve(max_active=1, max_queue=0) as s:
        gate = threading.Event()
        s.denoiser.gate = gate
        created = await s.client.post("/v1/jobs", json={"prompt": "long", "steps": 200})
        assert created.status_code == 202
        job_id = created.json()["id"]
        await until(s.denoiser.entered.is_set)
        deleted = await s.client.delete(f"/v1/jobs/{job_id}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"
        s.denoiser.gate = None
        gate.set()
        await until(lambda: s.engine.active_count == 0)
        assert len(s.denoiser.calls) <= 2
        status = await s.client.get(f"/v1/jobs/{job_id}")
        assert status.json()["status"] == "cancelled"
        events = await s.client.get(f"/v1/jobs/{job_id}/events")
        assert "event: cancelled" in events.text
        assert (await s.client.post("/generate", json={"prompt": "x", "steps": 2})).status_code == 200


async def test_queued_job_deleted_before_it_starts_never_reaches_the_model() -> None:
    async with serve(max_active=1, max_queue=4) as s:
        gate = threading.Event()
        s.denoiser.gate = gate
        first = await s.client.post("/v1/jobs", json={"prompt": "first", "steps": 1})
        await until(s.denoiser.entered.is_set)
        second = (await s.client.post("/v1/jobs", json={"prompt": "second", "steps": 1})).json()["id"]
        assert s.engine.queue_depth == 1
        assert (await s.client.delete(f"/v1/jobs/{second}")).json()["status"] == "cancelled"
        assert s.engine.queue_depth == 0
        gate.set()
        await until(lambda: s.engine.active_count == 0)
        await until(lambda: len(s.denoiser.calls) == 1)
        assert s.model.text_encoder.calls == [["first", ""]]
        assert (await s.client.get(f"/v1/jobs/{first.json()['id']}")).json()["status"] in ("succeeded", "running")


async def test_deadline_gives_504() -> None:
    async with serve(request_timeout_s=0.2) as s:
        gate = threading.Event()
        s.denoiser.gate = gate
        task = asyncio.create_task(s.client.post("/generate", json={"prompt": "slow", "steps": 50}))
        await until(s.denoiser.entered.is_set)
        await asyncio.sleep(0.3)  # past the deadline while the pass is blocked
        gate.set()
        response = await task
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert len(s.denoiser.calls) == 1


async def test_draining_turns_readiness_503_and_finishes_in_flight_work() -> None:
    async with serve() as s:
        assert (await s.client.get("/readyz")).status_code == 200
        gate = threading.Event()
        s.denoiser.gate = gate
        in_flight = asyncio.create_task(s.client.post("/generate", json={"prompt": "a", "steps": 3}))
        await until(s.denoiser.entered.is_set)
        s.engine.begin_drain()  # what SIGTERM does (server.commands.serve)
        ready = await s.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
        assert "retry-after" in ready.headers
        refused = await s.client.post("/generate", json={"prompt": "b"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        assert (await s.client.get("/healthz")).status_code == 200  # alive, just not ready
        gate.set()
        assert (await in_flight).status_code == 200
        assert await asyncio.to_thread(s.engine.drain, 5.0)
