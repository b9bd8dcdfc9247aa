"""The bundled model through the engine with max_batch=1: a request's image is byte-identical alone and under
concurrent load. With larger passes real kernels round differently per pass size (README "How it works":
1/255 in a few pixels on CPU), so max_batch=1 is the setting for bit-exact images whatever else is served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not (ROOT / "weights" / "bundled" / "unet" / "config.json").exists(), reason="no bundled weights"),
]


async def test_max_batch_1_gives_the_same_bytes_alone_and_under_load() -> None:
    import httpx

    from pipelines.loading import load_from_manifest
    from server.app import create_app
    from server.engine import Engine
    from server.settings import Settings

    model = load_from_manifest("bundled", ROOT / "weights_manifest.yaml", ROOT / "weights", device="cpu", dtype=torch.float32)
    settings = Settings(max_batch=1, max_active=8, max_queue=16, request_timeout_s=120.0, drain_timeout_s=10.0)  # type: ignore[call-arg]
    app = create_app(settings, Engine([model], settings))  # type: ignore[list-item]
    bodies = [{"prompt": p, "seed": 7, "steps": 4} for p in ("a red circle", "two green triangles", "a big blue square")]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://darkroom.test", timeout=120,
                                     headers={"Accept": "image/png"}) as client:
            alone = [(await client.post("/generate", json=body)).content for body in bodies]
            loaded = await asyncio.gather(*(client.post("/generate", json=body) for body in bodies * 3))
    assert all(r.status_code == 200 for r in loaded), [r.text for r in loaded if r.status_code != 200]
    assert [r.content for r in loaded] == alone * 3
    assert len(set(alone)) == 3  # distinct prompts, distinct images: the comparison is not vacuous
