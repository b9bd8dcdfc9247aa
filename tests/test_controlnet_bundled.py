"""The sketch ControlNet of the bundled model (CPU, fp32): sketch data, the mask extractor, the
shipped ControlNet through the manifest and through POST /generate.

Thresholds (measured first, set below with margin):
- mask extractor on 128 true renders (seen + held-out scenes): mean IoU 0.9996 clean; 0.98 after
  the judge's blur / noise / colour-shift augmentation. Asserted: 0.99 and 0.95.
- ControlNet: SCENES fixed sketches (sample_scenes(EVAL_SEED, ...), seeds = index) served by
  /generate's path (server.validation + the engine, CPU) at DDIM STEPS, w = 4, control scale 1:
  mean IoU of the extracted masks vs the sketch's filled masks IOU_MEASURED with the shipped
  weights (0.065 without the control image); asserted >= IOU_THRESHOLD, and at least IOU_GAIN
  above the same requests without it.
The weights root and manifest are the repository's (DARKROOM_WEIGHTS_ROOT / DARKROOM_MANIFEST
override them, e.g. to test an export before it is committed). The ControlNet's weights are
committed in weights/bundled_sketch_controlnet; the tests that need them skip where they are absent.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.model import LoadedModel
from training.controlnet_eval import held_set
from training.data import sample_scenes, scenes_to_batch
from training.judge import augment
from training.sketch import extract_mask, iou, sketch_scenes

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("DARKROOM_WEIGHTS_ROOT", ROOT / "weights"))
MANIFEST = Path(os.environ.get("DARKROOM_MANIFEST", ROOT / "weights_manifest.yaml"))
CONTROL_ID = "bundled-sketch"
HAVE_WEIGHTS = all((WEIGHTS / p).exists() for p in ("bundled/model_index.json", "bundled_sketch_controlnet/config.json"))
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="bundled or bundled_sketch_controlnet weights not present")

SCENES = 8
STEPS = 20
IOU_MEASURED = 0.892  # call-5b ControlNet on the call-13 UNet (per image 0.81-0.96); 0.040 without the control image (call-12 UNet: 0.894 / 0.035; call-4: 0.883 / 0.065)
IOU_THRESHOLD = 0.8  # the target; one image losing 0.66 would still pass
IOU_GAIN = 0.5


def _to_png_b64(image: torch.Tensor) -> str:
    """(3, H, W) in [0, 1] -> base64 PNG."""
    pixels = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_sketches_are_outlines_of_the_rendered_objects_and_deterministic() -> None:
    batch = scenes_to_batch(sample_scenes(3, 16, "train"))
    first = sketch_scenes(batch, torch.Generator().manual_seed(5), jitter=True)
    again = sketch_scenes(batch, torch.Generator().manual_seed(5), jitter=True)
    assert torch.equal(first.sketches, again.sketches) and torch.equal(first.masks, again.masks)
    strokes = first.sketches[:, 0] > 0.5  # (B, H, W)
    assert first.sketches.shape == (16, 3, 64, 64) and bool((first.sketches[:, 0] == first.sketches[:, 2]).all())
    # every stroke lies on the boundary of the filled masks (within 2 px), and every object is drawn
    mask = first.masks.float().unsqueeze(1)
    dilated = torch.nn.functional.max_pool2d(mask, 5, 1, 2)
    eroded = -torch.nn.functional.max_pool2d(-mask, 5, 1, 2)
    boundary = (dilated - eroded).squeeze(1) > 0
    assert bool((strokes & ~boundary).sum() == 0)
    assert bool(((strokes.flatten(1).sum(1) > 0) == (first.masks.flatten(1).sum(1) > 0)).all())
    # the render's pixels differ from its background exactly where the masks say
    assert float(iou(extract_mask(first.images), first.masks).mean()) > 0.99


def test_mask_extractor_recovers_true_masks_of_renders() -> None:
    for split in ("train", "heldout"):
        batch = scenes_to_batch(sample_scenes(11, 64, split))
        drawn = sketch_scenes(batch, torch.Generator().manual_seed(2))
        clean = iou(extract_mask(drawn.images), drawn.masks)
        noisy = iou(extract_mask(augment(drawn.images, torch.Generator().manual_seed(3))), drawn.masks)
        assert float(clean.mean()) >= 0.99, split
        assert float(noisy.mean()) >= 0.95, split
    empty = torch.full((2, 3, 64, 64), 0.5)
    assert not bool(extract_mask(empty).any())


@pytest.fixture(scope="module")
def bundled() -> Iterator[LoadedModel]:
    from pipelines.loading import load_from_manifest

    yield load_from_manifest("bundled", manifest_path=MANIFEST, weights_root=WEIGHTS, device="cpu", dtype=torch.float32)


def _served_masks(model: LoadedModel, with_control: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Extracted masks of the served images for the fixed sketches (all requests in flight at once
    through server.validation + the engine, as /generate runs them), and the sketches' true masks."""
    from server.engine import Engine
    from server.schemas import GenerateRequest
    from server.settings import Settings
    from training.classifier_guidance_served import served

    captions, _, masks, sketches = held_set(SCENES, "train", torch.device("cpu"))
    requests = [
        GenerateRequest(prompt=c.text, seed=i, sampler="ddim", steps=STEPS, guidance=4.0,
                        control_image=_to_png_b64(sketches[i]) if with_control else None, control_scale=1.0)
        for i, c in enumerate(captions)
    ]
    engine = Engine([model], Settings(device="cpu", max_batch=SCENES, max_queue=64, request_timeout_s=600.0))
    engine.start()
    try:
        images = served(engine, requests)
    finally:
        engine.stop()
    return extract_mask(images), masks


@needs_weights
def test_the_sketch_controlnet_loads_through_the_manifest(bundled: LoadedModel) -> None:
    from pipelines.manifest import load_manifest

    entry = load_manifest(MANIFEST).get(CONTROL_ID)
    assert entry.kind == "controlnet" and entry.family == "bundled"
    assert all(f.sha256 is not None for f in entry.files) and entry.files
    assert all(f.size is None or f.size <= 16 * 2**20 for f in entry.files)
    assert list(bundled.controlnets) == [CONTROL_ID]
    controlnet = bundled.controlnets[CONTROL_ID]
    embedded = controlnet.controlnet_cond_embedding(torch.zeros(1, 3, 64, 64))
    assert tuple(embedded.shape[-2:]) == (16, 16)  # 64 px control -> the 16 x 16 latent grid


@needs_weights
def test_controlnet_images_follow_the_sketch(bundled: LoadedModel) -> None:
    controlled, masks = _served_masks(bundled, with_control=True)
    plain, _ = _served_masks(bundled, with_control=False)
    with_control = float(iou(controlled, masks).mean())
    without = float(iou(plain, masks).mean())
    assert with_control >= IOU_THRESHOLD, (with_control, without)
    assert with_control - without >= IOU_GAIN, (with_control, without)


@needs_weights
@pytest.mark.anyio
async def test_generate_with_a_control_image_over_http(bundled: LoadedModel) -> None:
    from tests.server.conftest import serve

    sketches = held_set(2, "train", torch.device("cpu"))[3]
    body = {"prompt": "a large red circle", "seed": 3, "steps": 8, "control_image": _to_png_b64(sketches[0])}
    async with serve(bundled) as s:
        ok = await s.client.post("/generate", json=body)
        assert ok.status_code == 200, ok.text
        result = ok.json()
        png = base64.b64decode(result["images"][0])
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert image.shape == (64, 64, 3)
        plain = await s.client.post("/generate", json={**body, "control_image": None})
        scaled0 = await s.client.post("/generate", json={**body, "control_scale": 0.0})
        assert plain.status_code == 200 and scaled0.status_code == 200
        assert plain.json()["images"][0] == scaled0.json()["images"][0]  # scale 0 = no control
        assert plain.json()["images"][0] != result["images"][0]
        # another size is resized to the request's width x height (documented behaviour)
        big = torch.nn.functional.interpolate(sketches[:1], size=(128, 128), mode="nearest")[0]
        resized = await s.client.post("/generate", json={**body, "control_image": _to_png_b64(big)})
        assert resized.status_code == 200, resized.text
        for bad, field in (
            ({"control_image": "not base64 !"}, "control_image"),
            ({"control_image": base64.b64encode(b"GIF89a not an image").decode()}, "control_image"),
            ({"control_scale": 9.0}, "control_scale"),
            ({"control_image": None, "controlnet": CONTROL_ID}, "control_image"),
            ({"controlnet": "nope"}, "controlnet"),
        ):
            refused = await s.client.post("/generate", json={**body, **bad})
            assert refused.status_code == 422, (bad, refused.text)
            assert field in refused.text, (bad, refused.text)
