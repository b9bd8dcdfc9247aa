"""Engine.warm_up: one pass of every batch bucket per model before readiness (settings.warm_up)."""

from __future__ import annotations

import threading

import pytest

from server.engine import Engine
from server.settings import Settings
from tests.server.conftest import serve, until
from tests.server.known_model import KNOWN_FAMILY, known_model

pytestmark = pytest.mark.anyio


async def test_warm_up_runs_each_bucket_before_ready() -> None:
    """Readiness and /generate answer 503 'not_ready' while the warm-up's passes run; afterwards the
    denoiser has seen every padded bucket once (CFG doubling each: default guidance 3), and serving works."""
    model = known_model()
    gate = threading.Event()
    model.denoiser.gate = gate  # hold the warm-up inside its first pass
    async with serve(model, warm_up=True, max_batch=4, pad_to_bucket=True) as s:
        assert s.engine.warming and not s.engine.ready  # from the end of start-up, before its first pass
        await until(lambda: model.denoiser.entered.is_set())
        assert s.engine.warming and not s.engine.ready
        ready = await s.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        assert "warming up" in ready.json()["error"]["message"]
        refused = await s.client.post("/generate", json={"prompt": "a red circle"})
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        assert (await s.client.get("/healthz")).status_code == 200  # alive meanwhile
        gate.set()
        await until(lambda: s.engine.ready)
        assert sorted(set(model.denoiser.calls)) == [2, 4, 8]  # 1, 2, 4 images x (cond + uncond)
        assert len(model.denoiser.calls) == 3  # one step each
        assert (await s.client.get("/readyz")).status_code == 200
        response = await s.client.post("/generate", json={"prompt": "a red circle", "seed": 3})
        assert response.status_code == 200, response.text


async def test_warm_up_is_off_on_cpu_by_default_and_ready_at_once() -> None:
    model = known_model()
    async with serve(model) as s:
        assert s.settings.warm_up is None and not s.engine.wants_warm_up()
        assert s.engine.ready and not model.denoiser.calls
        assert (await s.client.get("/readyz")).status_code == 200


def test_buckets_follow_max_batch_and_the_pixel_budget() -> None:
    side = KNOWN_FAMILY.default_width * KNOWN_FAMILY.default_height
    assert Engine([known_model()], Settings(max_batch=8)).warm_up_buckets("known") == [1, 2, 4, 8]  # type: ignore[call-arg]
    assert Engine([known_model()], Settings(max_batch=6)).warm_up_buckets("known") == [1, 2, 4, 6]  # type: ignore[call-arg]
    budget = Settings(max_batch=8, max_batch_pixels=3 * side)  # type: ignore[call-arg]
    assert Engine([known_model()], budget).warm_up_buckets("known") == [1, 2, 4]  # 3 images fit: padded to 4
    assert Engine([known_model()], Settings(warm_up=True)).wants_warm_up()  # type: ignore[call-arg]


async def test_a_failing_warm_up_still_serves() -> None:
    """A warm-up pass that raises is logged; the server becomes ready and serves."""
    model = known_model()
    model.denoiser.oom_above_rows = 3  # the 2- and 4-image passes (4 and 8 rows) fail
    async with serve(model, warm_up=True, max_batch=4, pad_to_bucket=True) as s:
        await until(lambda: s.engine.ready)
        model.denoiser.oom_above_rows = None
        response = await s.client.post("/generate", json={"prompt": "a red circle", "seed": 3})
        assert response.status_code == 200, response.text


async def test_an_app_over_an_engine_warmed_already_is_ready_at_once() -> None:
    """A finished warm-up is not repeated: an app started again over the same engine (the bench's
    HTTP runs over the engine it warmed in-process) serves at once, with no second pass."""
    model = known_model()
    async with serve(model, warm_up=True, max_batch=4, pad_to_bucket=True) as s:
        await until(lambda: s.engine.ready)
        passes = len(model.denoiser.calls)
        assert not s.engine.wants_warm_up()
        from server.app import create_app

        again = create_app(s.settings, s.engine)
        async with again.router.lifespan_context(again):
            assert s.engine.ready and not s.engine.warming
            assert len(model.denoiser.calls) == passes


async def test_warm_up_covers_listed_sizes_and_each_controlnet() -> None:
    """Every (size, ControlNet) shape is warmed: the default size and settings.warm_up_sizes, each
    without and with the model's ControlNet (the ControlNet itself runs); a size the model cannot
    serve is skipped and the rest still run."""
    from pipelines.tiny import tiny_sd1

    model = tiny_sd1(controlnet=True)
    seen: list[tuple[str, int, int, int]] = []

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
            sample = args[0] if args else kwargs["sample"]
            seen.append((name, *sample.shape[0:1], *sample.shape[2:]))
        return hook

    model.denoiser.unet.register_forward_pre_hook(record("unet"), with_kwargs=True)  # type: ignore[attr-defined]
    model.controlnets["tiny-control"].register_forward_pre_hook(record("control"), with_kwargs=True)
    async with serve(model, warm_up=True, max_batch=2, pad_to_bucket=True, warm_up_sizes=[(16, 24), (13, 13)]) as s:
        assert s.engine.warm_up_shapes("tiny-sd1") == [((32, 32), None), ((32, 32), "tiny-control"),
                                                        ((16, 24), None), ((16, 24), "tiny-control"),
                                                        ((13, 13), None), ((13, 13), "tiny-control")]
        await until(lambda: s.engine.ready, timeout_s=60)
        # the tiny model's latents are 1/2 of the image (H, W); 1 and 2 images x (cond + uncond) rows;
        # 13x13 is not a multiple of its latent factor: skipped
        for name in ("unet", "control"):
            shapes = {(rows, h, w) for n, rows, h, w in seen if n == name}
            assert shapes == {(2, 16, 16), (4, 16, 16), (2, 12, 8), (4, 12, 8)}, (name, shapes)
        response = await s.client.post("/generate", json={"prompt": "a red circle", "seed": 3, "steps": 2})
        assert response.status_code == 200, response.text


def test_warm_up_sizes_setting_parses_and_names_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_WARM_UP_SIZES", "768x768, 512X1024")
    assert Settings().warm_up_sizes == [(768, 768), (512, 1024)]  # type: ignore[call-arg]
    monkeypatch.setenv("DARKROOM_WARM_UP_SIZES", "768")
    with pytest.raises(ValueError, match="warm_up_sizes.*WIDTHxHEIGHT"):
        Settings()  # type: ignore[call-arg]
