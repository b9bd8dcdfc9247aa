"""The SDK against a live Darkroom server on 127.0.0.1 (uvicorn in a thread, real sockets).

The server serves the bundled model when its weights are in weights/bundled, else the tiny
random SD1 model of pipelines.tiny (noise-like images: the tests check sizes, progress and
errors, never content).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest
from darkroom_client_ext import AsyncDarkroom, Darkroom, NotFound, ValidationError, make_request

from .conftest import LiveServer

STEPS = 4  # few steps keep the tests fast; the job test asks for more to see progress
PROMPT = "a small red circle left of a blue square"


@pytest.fixture()
def client(live_server: LiveServer) -> Iterator[Darkroom]:
    with Darkroom(live_server.url, timeout_s=60) as darkroom:
        yield darkroom


def _non_square_size(client: Darkroom) -> tuple[int, int]:
    """A valid (width, height) with width != height, from the model's advertised limits."""
    info = client.models()[0]
    factor = info.latent_factor
    width = info.default_width
    height = max(info.min_side, (info.default_height // 2) // factor * factor)
    if height == width:
        height = width + factor
    assert width * height <= info.max_pixels and max(width, height) <= info.max_side
    return width, height


def test_ready_and_models(client: Darkroom, live_server: LiveServer) -> None:
    assert client.ready()
    models = client.models()
    assert [m.id for m in models] == [live_server.model_id]
    assert {s.name for s in models[0].samplers} >= {"ddim"}
    assert models[0].default_width % models[0].latent_factor == 0


def test_generate_returns_a_pil_image_of_the_requested_size(client: Darkroom) -> None:
    width, height = _non_square_size(client)
    image = client.generate(PROMPT, steps=STEPS, seed=3, width=width, height=height, sampler="ddim")
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == (width, height)
    again = client.generate(PROMPT, steps=STEPS, seed=3, width=width, height=height, sampler="ddim")
    assert again.tobytes() == image.tobytes()  # same seed, same image


def test_generate_json_carries_metadata(client: Darkroom) -> None:
    from darkroom_client_ext import decode_images

    width, height = _non_square_size(client)
    response = client.generate_json(make_request(PROMPT, steps=STEPS, seed=11, width=width, height=height, num_images=2))
    meta = response.metadata
    assert (meta.seed, meta.steps, meta.width, meta.height, meta.num_images) == (11, STEPS, width, height, 2)
    assert [im.size for im in decode_images(response)] == [(width, height)] * 2


def test_job_reports_progress_then_its_result(client: Darkroom) -> None:
    width, height = _non_square_size(client)
    steps = 60  # enough model evaluations that the stream is open before the job ends
    job_id = client.submit_job(
        make_request(PROMPT, steps=steps, seed=5, width=width, height=height, sampler="ddim", preview=True)
    )
    events = list(client.iter_job_events(job_id))
    names = [e.event for e in events]
    assert names[-1] == "result" and set(names[:-1]) == {"progress"}, names
    progress = [e.json() for e in events[:-1]]
    assert len(progress) >= 2, "the stream opened after the job had finished"
    previews = [p for p in progress if "preview_png" in p]
    assert previews, "preview=True: some progress events carry a low-resolution PNG"
    from darkroom_client_ext import decode_image

    preview = decode_image(base64.b64decode(previews[0]["preview_png"]))
    assert max(preview.size) <= 16 and preview.size[0] > preview.size[1]  # width > height, as requested
    assert all(p["total"] == steps for p in progress)  # DDIM: one model evaluation per step
    done = [p["step"] for p in progress]
    assert done == sorted(set(done)) and 1 <= done[0] and done[-1] <= steps
    result = client.get_job(job_id)
    assert (result.status.value, result.step, result.total) == ("succeeded", steps, steps)
    # The result event and GET /v1/jobs/{id} carry the same images.
    final = events[-1].json()
    assert final["images"] == result.result.images  # type: ignore[union-attr]
    assert final["metadata"]["seed"] == 5


def test_wait_job_and_progress_callback(client: Darkroom) -> None:
    width, height = _non_square_size(client)
    job_id = client.submit_job(make_request(PROMPT, steps=20, seed=9, width=width, height=height, sampler="ddim"))
    seen: list[tuple[int, int]] = []
    result = client.wait_job(job_id, on_progress=lambda step, total: seen.append((step, total)))
    assert (result.metadata.seed, result.metadata.width, result.metadata.height) == (9, width, height)
    assert all(total == 20 and 1 <= step <= 20 for step, total in seen)


def test_422_names_the_field(client: Darkroom) -> None:
    info = client.models()[0]
    with pytest.raises(ValidationError) as bad_width:
        client.generate(PROMPT, width=info.default_width + 1, height=info.default_height, steps=STEPS)
    assert (bad_width.value.status_code, bad_width.value.field) == (422, "width")
    assert bad_width.value.code == "invalid_request"
    with pytest.raises(ValidationError) as bad_steps:
        client.generate(PROMPT, steps=0)
    assert (bad_steps.value.status_code, bad_steps.value.field) == (422, "steps")
    with pytest.raises(ValidationError) as bad_sampler:
        client.submit_job(make_request(PROMPT, sampler="no-such-sampler"))
    assert bad_sampler.value.field == "sampler"


def test_unknown_job_is_not_found(client: Darkroom) -> None:
    with pytest.raises(NotFound) as info:
        client.get_job("no-such-job")
    assert info.value.status_code == 404
    with pytest.raises(NotFound):
        list(client.iter_job_events("no-such-job"))


def test_async_client(live_server: LiveServer) -> None:
    async def run() -> tuple[tuple[int, int], list[str]]:
        async with AsyncDarkroom(live_server.url, timeout_s=60) as darkroom:
            info = (await darkroom.models())[0]
            image = await darkroom.generate(PROMPT, steps=STEPS, seed=1, width=info.default_width, height=info.default_height)
            job_id = await darkroom.submit_job(make_request(PROMPT, steps=STEPS, seed=2))
            names = [event.event async for event in darkroom.iter_job_events(job_id)]
            return image.size, names

    size, names = asyncio.run(run())
    assert size[0] > 0 and size[1] > 0
    assert names[-1] == "result"


def test_generated_sdk_calls_the_live_server(live_server: LiveServer) -> None:
    from darkroom_client import Client
    from darkroom_client.api.openai import openai_images_v1_images_generations_post as openai_images
    from darkroom_client.models import OpenAIImagesRequest, OpenAIImagesResponse

    with Client(base_url=live_server.url, timeout=None) as api:
        darkroom = Darkroom(live_server.url)
        info = darkroom.models()[0]
        darkroom.close()
        size = f"{info.default_width}x{info.default_height}"
        response = openai_images.sync_detailed(client=api, body=OpenAIImagesRequest(prompt=PROMPT, n=2, size=size))
    assert response.status_code == 200
    assert isinstance(response.parsed, OpenAIImagesResponse)
    from darkroom_client_ext import decode_image

    images = [decode_image(base64.b64decode(item.b64_json)) for item in response.parsed.data]
    assert [im.size for im in images] == [(info.default_width, info.default_height)] * 2


def test_cancelled_job_raises_conflict(client: Darkroom) -> None:
    from darkroom_client_ext import Conflict

    job_id = client.submit_job(make_request(PROMPT, steps=150, seed=4, sampler="ddim"))
    client.cancel_job(job_id)
    with pytest.raises(Conflict) as info:
        client.wait_job(job_id)
    assert (info.value.status_code, info.value.code) == (409, "cancelled")
    status = client.get_job(job_id)
    assert status.status.value == "cancelled" and status.step < 150
