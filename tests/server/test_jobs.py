"""Jobs: create, poll, server-sent events with progress and previews, then the result."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tests.server.conftest import serve, until

pytestmark = pytest.mark.anyio


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events, name, data = [], None, []
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    if name is not None:
        events.append((name, json.loads("\n".join(data))))
    return events


async def test_job_events_show_progress_previews_then_the_result() -> None:
    async with serve(preview_every=2) as s:
        body = {"prompt": "a job", "seed": 11, "steps": 4, "preview": True}
        created = await s.client.post("/v1/jobs", json=body)
        assert created.status_code == 202
        job_id = created.json()["id"]
        assert created.json()["status"] in ("queued", "running")
        response = await s.client.get(f"/v1/jobs/{job_id}/events")
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.text)
        names = [n for n, _ in events]
        assert names[-1] == "result" and set(names[:-1]) == {"progress"}
        steps = [d["step"] for n, d in events if n == "progress"]
        assert steps == sorted(steps) and steps[-1] == 4 and all(d["total"] == 4 for n, d in events[:-1])
        previews = [d["preview_png"] for n, d in events if n == "progress" and "preview_png" in d]
        assert previews, "no preview although preview=true"
        image = Image.open(io.BytesIO(base64.b64decode(previews[0])))
        assert image.format == "PNG" and image.size == (8, 8)  # the 16x16 image's 8x8 latent
        result = events[-1][1]
        direct = await s.client.post("/generate", json={k: v for k, v in body.items() if k != "preview"})
        assert result["images"] == direct.json()["images"]
        assert result["metadata"]["seed"] == 11
        status = (await s.client.get(f"/v1/jobs/{job_id}")).json()
        assert status["status"] == "succeeded" and status["step"] == 4 and status["result"]["images"] == result["images"]
        # a finished job's stream replays the result; DELETE forgets it
        assert parse_sse((await s.client.get(f"/v1/jobs/{job_id}/events")).text)[-1][0] == "result"
        assert (await s.client.delete(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"
        assert (await s.client.get(f"/v1/jobs/{job_id}")).status_code == 404


async def test_failed_job_reports_its_error_event() -> None:
    async with serve() as s:
        s.model.vae.nan_decodes = 2
        job_id = (await s.client.post("/v1/jobs", json={"prompt": "x", "steps": 2})).json()["id"]
        events = parse_sse((await s.client.get(f"/v1/jobs/{job_id}/events")).text)
        assert events[-1] == ("error", {"error": {"code": "nan_output", "message": events[-1][1]["error"]["message"],
                                                  "field": None}})
        await until(lambda: s.engine.active_count == 0)
        status = (await s.client.get(f"/v1/jobs/{job_id}")).json()
        assert status["status"] == "failed" and status["error"]["code"] == "nan_output"


def test_finished_jobs_expire_by_count_and_age() -> None:
    import asyncio

    from server.generation import GenerationSpec
    from server.jobs import JobStore

    def spec(i: int) -> GenerationSpec:
        return GenerationSpec(id=f"job{i}", model="m", prompt="p", negative_prompt="", sampler="ddim", steps=1,
                              guidance=1.0, seed=i, width=8, height=8, num_images=1, output_format="png")

    async def scenario() -> None:
        store = JobStore(max_jobs=2, ttl_s=1000.0)
        loop = asyncio.get_running_loop()
        jobs = [store.add(spec(i), lambda job: loop.create_future()) for i in range(3)]
        for job in jobs:
            job.settle("cancelled")
        store.add(spec(3), lambda job: loop.create_future())  # evicts the oldest finished
        assert store.get("job0") is None and store.get("job1") is None and store.get("job2") is not None
        store.ttl_s = 0.0
        store.add(spec(4), lambda job: loop.create_future())  # every finished job is now too old
        assert store.get("job2") is None and store.get("job3") is not None and len(store) == 2

    asyncio.run(scenario())
