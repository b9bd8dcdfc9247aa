"""Batch invariance (settings.batch_invariant, pipelines.accel.fixed_rows_call): with every UNet call on one fixed
number of rows and every decode on another, a row's result is bit-identical whatever else is in the pass and
wherever it sits, on the bundled model's real kernels; through the engine, a request's image is byte-identical
alone and under concurrent load with max_batch 8 (without the setting that test fails: passes of different sizes
round differently). max_batch=1, one request's rows per pass, is exact too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from pipelines.accel import FixedRows, enable_batch_invariance, fixed_rows_call

ROOT = Path(__file__).resolve().parents[1]
HAVE_BUNDLED = (ROOT / "weights" / "bundled" / "unet" / "config.json").exists()
needs_bundled = pytest.mark.skipif(not HAVE_BUNDLED, reason="no bundled weights")


def test_fixed_rows_call_pads_chunks_and_joins_nested_outputs() -> None:
    calls: list[int] = []

    def module(x: torch.Tensor, scale: torch.Tensor, extra: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        calls.append(x.shape[0])
        return x * scale[:, None], [x + extra["bias"], torch.tensor(1.0)]

    x, scale = torch.arange(10.0).reshape(5, 2), torch.arange(5.0)
    out, (shifted, scalar) = fixed_rows_call(module, 4, x, scale, extra={"bias": torch.ones(5, 2)})
    assert calls == [4, 4]  # 5 rows: a full chunk, then 1 row padded to 4
    assert torch.equal(out, x * scale[:, None]) and torch.equal(shifted, x + 1) and scalar.item() == 1.0
    calls.clear()
    fixed_rows_call(module, 5, x, scale, extra={"bias": torch.ones(5, 2)})
    assert calls == [5]  # already the shape: called as it is
    with pytest.raises(ValueError, match="rows must be >= 1"):
        FixedRows(torch.nn.Identity(), 0)


@pytest.fixture(scope="module")
def bundled():  # type: ignore[no-untyped-def]
    from pipelines.loading import load_from_manifest

    return load_from_manifest("bundled", ROOT / "weights_manifest.yaml", ROOT / "weights", device="cpu", dtype=torch.float32)


@needs_bundled
def test_a_unet_row_is_the_same_alone_and_in_any_pass(bundled) -> None:  # type: ignore[no-untyped-def]
    unet = FixedRows(bundled.denoiser.unet, 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 16, 16, generator=g)
    t = torch.tensor([999, 800, 500, 500, 200, 20])
    context, _ = bundled.text_encoder.encode([f"{n} red circles" for n in ("one", "two", "three", "four", "five", "six")])
    e = context.text_embeddings
    with torch.no_grad():
        alone = [unet(x[i : i + 1], t[i : i + 1], encoder_hidden_states=e[i : i + 1], return_dict=False)[0] for i in range(6)]
        for order in ([0, 1, 2], [3, 0], [5, 4, 3, 2, 1, 0], [2]):  # 3 rows, 2 rows, 6 rows (two chunks), 1 row
            batched = unet(x[order], t[order], encoder_hidden_states=e[order], return_dict=False)[0]
            for row, i in enumerate(order):
                assert torch.equal(batched[row], alone[i][0]), (order, i)


@needs_bundled
def test_a_decoded_image_is_the_same_alone_and_in_any_decode(bundled) -> None:  # type: ignore[no-untyped-def]
    from pipelines.vae import KLAutoencoder

    vae = KLAutoencoder(bundled.vae.vae, scaling_factor=bundled.vae.scaling_factor, upcast=False)
    vae.decode_rows = 4
    latents = torch.randn(5, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    alone = [vae.decode(latents[i : i + 1]) for i in range(5)]
    for order in ([0, 1], [4, 3, 2, 1, 0], [2]):
        images = vae.decode(latents[order])
        for row, i in enumerate(order):
            assert torch.equal(images[row], alone[i][0]), (order, i)


BODIES = [{"prompt": p, "seed": 7, "steps": 4} for p in ("a red circle", "two green triangles", "a big blue square")]


async def _pngs(settings: object, model: object, groups: list[list[dict]]) -> list[list[object]]:
    """Each group of request bodies sent at once (a group of one is a request alone), through the app over an engine."""
    import httpx

    from server.app import create_app
    from server.engine import Engine

    app = create_app(settings, Engine([model], settings))  # type: ignore[arg-type, list-item]
    answers = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://darkroom.test", timeout=120,
                                     headers={"Accept": "image/png"}) as client:
            for group in groups:
                answers.append(list(await asyncio.gather(*(client.post("/generate", json=body) for body in group))))
    failed = [r.text for group in answers for r in group if r.status_code != 200]
    assert not failed, failed
    return [[r.content for r in group] for group in answers]


def _bundled_on_cpu():  # type: ignore[no-untyped-def]
    from pipelines.loading import load_from_manifest

    return load_from_manifest("bundled", ROOT / "weights_manifest.yaml", ROOT / "weights", device="cpu", dtype=torch.float32)


@needs_bundled
@pytest.mark.anyio
async def test_the_engine_with_batch_invariance_gives_the_same_bytes_alone_and_under_load() -> None:
    from server.settings import Settings

    model = _bundled_on_cpu()
    settings = Settings(max_batch=8, max_active=8, max_queue=16, request_timeout_s=120.0, drain_timeout_s=10.0)  # type: ignore[call-arg]
    wrapped = enable_batch_invariance(model, rows=2 * settings.max_batch, decode_rows=settings.max_batch)
    assert wrapped == 3 + (model.tiny_vae is not None)  # UNet, sketch ControlNet, VAE (and its tiny decoder)
    from server.engine import _BLANK_CONTROL

    unguided = [{**body, "guidance": 1.0} for body in BODIES]  # rows without an uncond pass in the same passes
    controlled = [{**body, "control_image": _BLANK_CONTROL} for body in BODIES]  # through the sketch ControlNet
    answers = await _pngs(settings, model, [[b] for b in BODIES + unguided + controlled]
                          + [BODIES * 3, BODIES + unguided, controlled * 2])
    alone, unguided_alone, controlled_alone = ([a[0] for a in answers[i : i + 3]] for i in (0, 3, 6))
    loaded, mixed, controlled_loaded = answers[9], answers[10], answers[11]
    assert loaded == alone * 3
    assert mixed == alone + unguided_alone
    assert controlled_loaded == controlled_alone * 2
    assert len(set(alone)) == 3  # distinct prompts, distinct images: the comparison is not vacuous


@needs_bundled
@pytest.mark.anyio
async def test_max_batch_1_gives_the_same_bytes_alone_and_under_load() -> None:
    """The other exact setting: one request's rows per pass (unbatched throughput, no padding)."""
    from server.settings import Settings

    settings = Settings(max_batch=1, max_active=8, max_queue=16, request_timeout_s=120.0, drain_timeout_s=10.0)  # type: ignore[call-arg]
    answers = await _pngs(settings, _bundled_on_cpu(), [[b] for b in BODIES] + [BODIES * 3])
    assert answers[3] == [a[0] for a in answers[:3]] * 3


@needs_bundled
def test_the_setting_makes_the_served_model_batch_invariant() -> None:
    from server.models import load_served_models
    from server.settings import Settings

    common = {"model": "bundled", "device": "cpu", "max_batch": 4, "manifest": str(ROOT / "weights_manifest.yaml"),
              "weights_root": str(ROOT / "weights")}
    (model,), _ = load_served_models(Settings(batch_invariant=True, **common))  # type: ignore[arg-type]
    assert isinstance(model.denoiser.unet, FixedRows) and model.denoiser.unet.rows == 8
    assert model.vae.decode_rows == 4
    (plain,), _ = load_served_models(Settings(**common))  # type: ignore[arg-type]
    assert not isinstance(plain.denoiser.unet, FixedRows) and plain.vae.decode_rows is None
