"""`darkroom serve`: settings from flags and environment, the tiny fallback, draining on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.commands.serve import DrainingServer, how_to_call, settings_from
from server.engine import Engine
from server.models import load_served_model
from server.settings import Settings
from tests.server.conftest import until
from tests.server.known_model import known_model

ROOT = Path(__file__).resolve().parents[2]


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_PORT", "9001")
    monkeypatch.setenv("DARKROOM_MAX_BATCH", "4")
    monkeypatch.setenv("DARKROOM_API_KEYS", "a, b")
    args = argparse.Namespace(host=None, port=9100, manifest=None, model="m")
    s = settings_from(args)
    assert (s.host, s.port, s.model, s.max_batch, s.api_keys) == ("127.0.0.1", 9100, "m", 4, ["a", "b"])
    text = how_to_call(s, "m", 9100)
    assert "curl -s http://127.0.0.1:9100/generate" in text and "Authorization: Bearer" in text


def test_missing_default_weights_serve_a_labelled_tiny_model(tmp_path: Path) -> None:
    settings = Settings(manifest=str(ROOT / "weights_manifest.yaml"), weights_root=str(tmp_path))
    model, notice = load_served_model(settings)
    assert model.id == "tiny-sd1" and "tiny random" in model.description
    assert notice is not None and "TINY RANDOM MODEL" in notice and "bundled" in notice
    no_manifest = Settings(manifest=str(tmp_path / "none.yaml"), weights_root=str(tmp_path))
    model, notice = load_served_model(no_manifest)
    assert model.id == "tiny-sd1" and notice is not None and "no manifest" in notice


@pytest.fixture
def sse_exit_flag_restored() -> Iterator[None]:
    """sse-starlette hooks uvicorn's handle_exit and sets a process-wide flag that ends every
    later event stream; a real server process exits, a test process must put it back."""
    from sse_starlette.sse import AppStatus

    yield
    AppStatus.should_exit = False


@pytest.mark.anyio
@pytest.mark.usefixtures("sse_exit_flag_restored")
async def test_sigterm_stops_readiness_and_drains_in_flight_work() -> None:
    model = known_model()
    config = Settings(drain_timeout_s=10.0)
    engine = Engine([model], config)
    server = DrainingServer(
        __import__("uvicorn").Config(create_app(config, engine), host="127.0.0.1", port=0, log_level="warning",
                                     timeout_graceful_shutdown=10),
        engine,
        shutdown_delay_s=0.5,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    await until(lambda: server.started)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    gate = threading.Event()
    model.denoiser.gate = gate
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/readyz")).status_code == 200
        in_flight = asyncio.create_task(client.post("/generate", json={"prompt": "drain me", "steps": 3}))
        await until(model.denoiser.entered.is_set)
        server.handle_exit(signal.SIGTERM, None)  # what uvicorn calls on SIGTERM
        assert engine.draining and not engine.ready
        # still listening for the shutdown delay: readiness answers 503, new work is refused
        async with httpx.AsyncClient(base_url=url) as fresh:
            ready = await fresh.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
            assert (await fresh.post("/generate", json={"prompt": "late"})).status_code == 503
        gate.set()
        response = await in_flight
        assert response.status_code == 200 and len(response.json()["images"]) == 1
    end = time.monotonic() + 20
    while thread.is_alive() and time.monotonic() < end:
        await asyncio.sleep(0.05)
    assert not thread.is_alive(), "the server did not exit after draining"
    assert len(model.denoiser.calls) == 3


def test_several_models_load_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import server.models as models_module

    loaded: list[str | None] = []

    def fake_load(settings: Settings) -> tuple[object, None]:
        loaded.append(settings.model)
        return known_model(str(settings.model)), None

    monkeypatch.setattr(models_module, "load_served_model", fake_load)
    models, notice = models_module.load_served_models(Settings(model="a, b"))
    assert [m.id for m in models] == ["a", "b"] and loaded == ["a", "b"] and notice is None


@pytest.mark.parametrize(("env", "expected"), [(None, True), ("false", False)])
def test_the_decoder_layout_setting_reaches_the_decoder_lever(monkeypatch: pytest.MonkeyPatch, env: str | None,
                                                              expected: bool) -> None:
    import pipelines.accel
    import server.models as models_module

    monkeypatch.delenv("DARKROOM_VAE_CHANNELS_LAST", raising=False)
    if env is not None:
        monkeypatch.setenv("DARKROOM_VAE_CHANNELS_LAST", env)
    calls: list[dict] = []
    monkeypatch.setattr(models_module, "load_served_model", lambda settings: (known_model("a"), None))
    monkeypatch.setattr(pipelines.accel, "enable_vae_decoder_accel", lambda model, mode, **kw: calls.append(kw) or False)
    models_module.load_served_models(Settings(model="a"))
    assert calls == [{"compiled_unet": False, "channels_last": expected}]


@pytest.mark.anyio
async def test_create_app_without_an_engine_builds_one_in_its_lifespan() -> None:
    app = create_app(Settings(model="tiny-sd1"))
    assert app.state.engine is None  # nothing happens at creation
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/readyz")).status_code == 200
        models = (await c.get("/v1/models")).json()["models"]
        assert [m["id"] for m in models] == ["tiny-sd1"] and "tiny random" in models[0]["description"]
        response = await c.post("/generate", json={"prompt": "x", "steps": 1, "width": 16, "height": 16})
        assert response.status_code == 200 and response.json()["metadata"]["model"] == "tiny-sd1"
    assert not app.state.engine.ready  # stopped with the lifespan
