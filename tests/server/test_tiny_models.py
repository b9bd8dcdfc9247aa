"""The engine over pipelines.tiny's random models of the real architectures (diffusers classes)."""

from __future__ import annotations

import asyncio
import base64
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.text_to_image import text_to_image
from pipelines.tiny import tiny_dit, tiny_sd1, tiny_sdxl
from tests.server.conftest import serve, until

pytestmark = pytest.mark.anyio


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(np.int16)


def _gate_unet(model):  # type: ignore[no-untyped-def]
    """Hold the tiny UNet's first forward pass until the test releases it."""
    gate, entered = threading.Event(), threading.Event()
    inner = model.denoiser.__class__.__call__

    class Gated(model.denoiser.__class__):  # type: ignore[misc, name-defined]
        def __call__(self, x, sigma, cond):  # type: ignore[no-untyped-def]
            entered.set()
            gate.wait(timeout=60)
            return inner(self, x, sigma, cond)

    model.denoiser.__class__ = Gated
    return gate, entered


async def test_tiny_sd1_batched_images_equal_the_one_request_path_alone() -> None:
    model = tiny_sd1(controlnet=True)
    control = np.zeros((16, 16, 3), dtype=np.uint8)
    control[4:12, 4:12] = 255
    buffer = io.BytesIO()
    Image.fromarray(control).save(buffer, format="PNG")
    control_b64 = base64.b64encode(buffer.getvalue()).decode()
    bodies = [
        {"prompt": "a red circle", "seed": 1, "steps": 3, "guidance": 7.5, "width": 16, "height": 16},
        {"prompt": "a blue square", "seed": 2, "steps": 2, "guidance": 4.0, "width": 16, "height": 16,
         "sampler": "dpmpp_2m"},
        {"prompt": "green", "seed": 3, "steps": 3, "guidance": 1.0, "width": 16, "height": 16, "num_images": 2},
        {"prompt": "controlled", "seed": 4, "steps": 2, "width": 16, "height": 16, "control_image": control_b64,
         "control_scale": 0.7},
    ]
    async with serve(model) as s:
        gate, entered = _gate_unet(model)
        tasks = [asyncio.create_task(s.client.post("/generate", json=bodies[0]))]
        await until(entered.is_set)
        tasks += [asyncio.create_task(s.client.post("/generate", json=b)) for b in bodies[1:]]
        await until(lambda: s.engine.queue_depth == len(bodies) - 1)
        gate.set()
        batched = [r.json() for r in await asyncio.gather(*tasks)]
        assert all("images" in b for b in batched), batched
        shared = await s.sample(r"darkroom_batch_requests_count") - await s.sample(
            r'darkroom_batch_requests_bucket\{le="1.0"\}')
        assert shared >= 1
        assert np.abs(_pixels(batched[0]["images"][0]) - _pixels(batched[1]["images"][0])).max() > 8
        # each batched image equals pipelines.text_to_image's for the same request alone
        # (fp32 CPU: batch composition may change the last bits; at most 1/255 after rounding)
        ctrl = torch.from_numpy(control).permute(2, 0, 1).float().div(255)
        for body, got in zip(bodies, batched):
            extra = {"control_image": ctrl, "control_scale": 0.7} if "control_image" in body else {}
            ref, _ = text_to_image(model, body["prompt"], sampler=body.get("sampler"), steps=body["steps"],
                                      guidance=body.get("guidance"), seed=body["seed"], width=16, height=16,
                                      num_images=body.get("num_images", 1), **extra)
            assert len(got["images"]) == ref.shape[0]
            for b64, image in zip(got["images"], ref):
                ref_pixels = (image.permute(1, 2, 0) * 255).round().to(torch.int16).numpy()
                assert np.abs(_pixels(b64) - ref_pixels).max() <= 1


async def test_tiny_sdxl_sizes_share_a_class_only_with_their_own_size() -> None:
    model = tiny_sdxl()
    async with serve(model) as s:
        body = {"prompt": "xl", "seed": 5, "steps": 2, "width": 32, "height": 16}
        got = (await s.client.post("/generate", json=body)).json()
        ref, _ = text_to_image(model, "xl", steps=2, seed=5, width=32, height=16)
        ref_pixels = (ref[0].permute(1, 2, 0) * 255).round().to(torch.int16).numpy()
        assert np.abs(_pixels(got["images"][0]) - ref_pixels).max() <= 1


async def test_tiny_dit_takes_class_ids_as_prompts() -> None:
    model = tiny_dit()
    async with serve(model) as s:
        card = (await s.client.get("/v1/models")).json()["models"][0]
        assert card["text_conditioned"] is False and card["num_classes"] == 10
        bad = await s.client.post("/generate", json={"prompt": "a cat", "steps": 2})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "prompt"
        bad = await s.client.post("/generate", json={"prompt": "10", "steps": 2})
        assert bad.status_code == 422
        got = await s.client.post("/generate", json={"prompt": "3", "seed": 1, "steps": 2})
        assert got.status_code == 200, got.text
        ref, _ = text_to_image(model, "3", steps=2, seed=1)
        ref_pixels = (ref[0].permute(1, 2, 0) * 255).round().to(torch.int16).numpy()
        assert np.abs(_pixels(got.json()["images"][0]) - ref_pixels).max() <= 1
