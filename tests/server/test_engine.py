"""Engine scheduling: buckets, compatibility classes, the pixel budget, oldest work first."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from server.engine import bucket_size
from tests.server.conftest import gated_burst, serve


def test_bucket_sizes() -> None:
    assert [bucket_size(r, 32) for r in (1, 2, 3, 4, 5, 8, 9, 17, 32)] == [1, 2, 4, 4, 8, 8, 16, 32, 32]
    assert [bucket_size(r, 6) for r in (1, 3, 5, 6)] == [1, 4, 6, 6]  # never above max_batch


async def _burst(s, bodies: list[dict]) -> list:  # type: ignore[no-untyped-def]
    responses = await gated_burst(s, bodies)
    assert [r.status_code for r in responses] == [200] * len(bodies)
    return responses


@pytest.mark.anyio
async def test_sizes_never_share_a_pass_and_classes_take_turns() -> None:
    small = {"prompt": "s", "steps": 4, "guidance": 1.0, "width": 16, "height": 16}
    large = {"prompt": "l", "steps": 4, "guidance": 1.0, "width": 32, "height": 16}
    async with serve() as s:
        await _burst(s, [{**small, "seed": 0}, {**large, "seed": 1}, {**small, "seed": 2}, {**large, "seed": 3}])
        widths = [shape[-1] for shape in s.denoiser.shapes]
        # the first pass is the first request alone; then each pass is one class, in turns
        assert widths[0] == 8 and s.denoiser.shapes[0][0] == 1
        # every request-step ran exactly once in its own class (guidance 1: no uncond rows, no padding)
        assert sum(rows for rows, w in zip(s.denoiser.calls, widths) if w == 8) == 2 * 4
        assert sum(rows for rows, w in zip(s.denoiser.calls, widths) if w == 16) == 2 * 4
        later = widths[1:]
        assert all(a != b for a, b in itertools.pairwise(later)), f"classes did not alternate: {widths}"
        # rows of one class travel together: 2 large requests share passes
        assert max(rows for rows, w in zip(s.denoiser.calls, widths) if w == 16) == 2


@pytest.mark.anyio
async def test_pixel_budget_caps_rows_per_pass() -> None:
    body = {"prompt": "p", "steps": 3, "guidance": 1.0, "width": 16, "height": 16}
    async with serve(max_batch_pixels=2 * 16 * 16) as s:
        await _burst(s, [{**body, "seed": i} for i in range(5)])
        assert max(s.denoiser.calls) == 2
        assert sum(s.denoiser.calls) == 5 * 3  # padding is never needed at 1 and 2 rows


@pytest.mark.anyio
@pytest.mark.parametrize(("pad", "rows"), [(True, 4), (None, 3), (False, 3)])
async def test_passes_pad_to_a_bucket_on_request_or_cuda_only(pad: bool | None, rows: int) -> None:
    body = {"prompt": "p", "steps": 2, "guidance": 1.0}
    async with serve(pad_to_bucket=pad) as s:
        first, *others = await _burst(s, [{**body, "seed": i} for i in range(4)])
        # request 0 alone; then its 2nd step with the others' 1st (4 rows); then their 2nd (3 rows)
        assert s.denoiser.calls == [1, 4, rows]
        assert all(r.json()["images"] for r in [first, *others])


@pytest.mark.anyio
async def test_two_models_one_engine() -> None:
    import httpx

    from server.app import create_app
    from server.engine import Engine
    from server.settings import Settings
    from tests.server.known_model import known_model

    first, second = known_model("first"), known_model("second")
    settings = Settings()
    app = create_app(settings, Engine([first, second], settings))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert [m["id"] for m in (await client.get("/v1/models")).json()["models"]] == ["first", "second"]
        a, b = await asyncio.gather(client.post("/generate", json={"prompt": "x", "seed": 1, "steps": 2}),
                                    client.post("/generate", json={"prompt": "x", "seed": 1, "steps": 2,
                                                                    "model": "second"}))
        assert (a.json()["metadata"]["model"], b.json()["metadata"]["model"]) == ("first", "second")
        assert a.json()["images"] == b.json()["images"]  # the same analytic model under two ids
    assert len(first.denoiser.calls) == len(second.denoiser.calls) == 2  # never each other's passes


def test_retry_after_grows_with_the_queue_and_recent_latency() -> None:
    from server.engine import Engine
    from server.settings import Settings
    from tests.server.known_model import known_model

    engine = Engine([known_model()], Settings(max_batch=2, retry_after_s=2))
    assert engine._retry_after_s() == 2  # nothing known yet: the configured floor
    engine._latency_ema_s = 10.0
    engine._inbox.extend([object()] * 4)  # type: ignore[list-item]
    assert engine._retry_after_s() == 20  # 4 waiting x 10 s / 2 slots
    engine._inbox.extend([object()] * 100)  # type: ignore[list-item]
    assert engine._retry_after_s() == 60  # capped
