"""Image encoding: JPEG/WebP quality, the GPU (nvJPEG) path's fallback and batching, quality in the API."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from server import engine as engine_module
from server.engine import Engine
from server.images import DEFAULT_QUALITY, encode_image, encode_jpeg_cuda
from tests.server.conftest import serve

pytestmark = pytest.mark.anyio


def _noise(seed: int = 0, side: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_quality_sets_jpeg_and_webp_size_and_png_ignores_it() -> None:
    pixels = _noise()
    for fmt in ("jpeg", "webp"):
        low, high = encode_image(pixels, fmt, 10), encode_image(pixels, fmt, 95)
        assert len(low) < len(high) / 2, fmt
        assert encode_image(pixels, fmt) == encode_image(pixels, fmt, DEFAULT_QUALITY)
    assert encode_image(pixels, "png", 10) == encode_image(pixels, "png", 95)
    decoded = np.asarray(Image.open(io.BytesIO(encode_image(pixels, "png"))))
    assert np.array_equal(decoded, pixels)


def test_gpu_encoder_declines_host_tensors() -> None:
    # the engine then encodes with Pillow on its pool
    assert encode_jpeg_cuda(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)) is None


async def test_quality_reaches_the_encoder_and_422_names_it() -> None:
    async with serve() as s:
        sizes = {}
        for q in (5, 95):
            r = await s.client.post("/generate", json={"prompt": "a", "seed": 1, "width": 64, "height": 64,
                                                       "output_format": "jpeg", "quality": q},
                                    headers={"Accept": "image/jpeg"})
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(r.content)).format == "JPEG"
            sizes[q] = len(r.content)
        assert sizes[5] < sizes[95]
        for bad in (0, 101):
            r = await s.client.post("/generate", json={"prompt": "a", "output_format": "jpeg", "quality": bad})
            assert r.status_code == 422 and r.json()["error"]["field"] == "quality"


async def test_gpu_path_batches_one_call_per_quality_and_slices_rows_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the GPU encoder standing in (torchvision's CPU encoder), JPEG requests of one decode
    group are encoded in one call per quality and each request gets its own rows back."""
    from torchvision.io import encode_jpeg

    calls: list[tuple[int, int | None]] = []

    def fake_gpu(images: torch.Tensor, quality: int | None = None) -> list[bytes]:
        calls.append((images.shape[0], quality))
        return [e.numpy().tobytes() for e in encode_jpeg(list(images), quality=quality or DEFAULT_QUALITY)]

    monkeypatch.setattr(engine_module, "encode_jpeg_cuda", fake_gpu)
    monkeypatch.setattr(Engine, "_gpu_encodable", lambda self, work, rows: work.spec.output_format == "jpeg")
    async with serve() as s:
        import asyncio

        bodies = [
            {"prompt": "x", "seed": 1, "num_images": 2, "output_format": "jpeg", "quality": 50},
            {"prompt": "y", "seed": 2, "num_images": 1, "output_format": "jpeg", "quality": 50},
            {"prompt": "z", "seed": 3, "num_images": 1, "output_format": "jpeg", "quality": 80},
            {"prompt": "w", "seed": 4, "num_images": 1, "output_format": "png"},
        ]
        responses = await asyncio.gather(*(s.client.post("/generate", json=b) for b in bodies))
    assert all(r.status_code == 200 for r in responses)
    counts = [len(r.json()["images"]) for r in responses]
    assert counts == [2, 1, 1, 1]
    assert [r.json()["format"] for r in responses] == ["jpeg", "jpeg", "jpeg", "png"]
    # every JPEG row went through the stand-in, grouped by quality (batches depend on timing)
    assert sum(n for n, q in calls if q == 50) == 3 and sum(n for n, q in calls if q == 80) == 1
    assert all(q in (50, 80) for _, q in calls)
