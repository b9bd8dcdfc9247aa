"""The tiny decoder (fast mode) end to end: manifest entries of kind tiny_vae (each refusal names its
field), the loader attaching one to its pipeline (refusing one of another latent layout), and
/generate with "decoder": "tiny" - decoded by the tiny decoder only, in its own decode group,
a 422 naming `decoder` for a model without one, listed in GET /v1/models."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from diffusers import AutoencoderTiny
from torch import Tensor

from pipelines.loading import load_from_manifest
from pipelines.loading.errors import WeightsError
from pipelines.manifest import Manifest, ManifestError, load_manifest
from pipelines.vae import TinyAutoencoder
from tests.server.conftest import serve
from tests.server.known_model import FACTOR, KnownVAE, known_model

ROOT = Path(__file__).resolve().parents[1]


def _manifest(pipeline: dict[str, Any], tiny: dict[str, Any]) -> dict[str, Any]:
    base = {"id": "m", "family": "bundled", "format": "diffusers", "path": "m"}
    entry = {"id": "t", "family": "bundled", "kind": "tiny_vae", "format": "diffusers", "path": "t"}
    return {"default_model": "m", "models": [{**base, **pipeline}, {**entry, **tiny}]}


def test_a_pipeline_attaches_a_tiny_vae_entry_by_id() -> None:
    manifest = Manifest.model_validate(_manifest({"tiny_vae": "t"}, {}))
    assert manifest.get("m").tiny_vae == "t"
    assert [e.id for e in manifest.pipelines()] == ["m"]


@pytest.mark.parametrize(
    ("pipeline", "tiny", "words"),
    [
        ({"tiny_vae": "m"}, {}, "models[m].tiny_vae: 'm' is not a tiny_vae entry"),
        ({"tiny_vae": "t"}, {"family": "sd1"}, "is for family sd1"),
        ({}, {"tiny_vae": "t"}, "only a pipeline entry attaches a tiny decoder"),
        ({}, {"format": "single_file", "files": [{"path": "t.safetensors"}]}, "a tiny_vae entry is one diffusers"),
    ],
)
def test_tiny_vae_fields_are_checked_and_errors_name_them(
    tmp_path: Path, pipeline: dict[str, Any], tiny: dict[str, Any], words: str
) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(_manifest(pipeline, tiny)))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert words in str(info.value)


def _tiny_autoencoder(stages: int) -> AutoencoderTiny:
    """A random AutoencoderTiny of `stages` stages (latent factor 2 ** (stages - 1)), 4 latent channels."""
    torch.manual_seed(0)
    return AutoencoderTiny(encoder_block_out_channels=(8,) * stages, decoder_block_out_channels=(8,) * stages,
                           num_encoder_blocks=(1,) * stages, num_decoder_blocks=(1,) * stages)


def _weights_root(tmp_path: Path, stages: int) -> tuple[Path, Path]:
    """A weights root holding the bundled model (a copy) and a random tiny decoder; a manifest naming both."""
    root = tmp_path / "weights"
    root.mkdir()
    shutil.copytree(ROOT / "weights" / "bundled", root / "bundled")  # a link out of the root is refused
    _tiny_autoencoder(stages).save_pretrained(root / "tiny")
    data = {"default_model": "bundled", "models": [
        {"id": "bundled", "family": "bundled", "format": "diffusers", "path": "bundled", "dtype": "float32",
         "tiny_vae": "bundled-tiny", "defaults": {"sampler": "ddim", "steps": 2, "guidance": 4.0, "width": 64, "height": 64},
         "limits": {"min_side": 32, "max_side": 256, "max_pixels": 65536}},
        {"id": "bundled-tiny", "family": "bundled", "kind": "tiny_vae", "format": "diffusers", "path": "tiny"},
    ]}
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(data))
    return root, manifest


@pytest.mark.skipif(not (ROOT / "weights" / "bundled" / "model_index.json").exists(), reason="the bundled model is not in this checkout")
def test_the_loader_attaches_the_tiny_decoder_and_it_decodes_the_models_latents(tmp_path: Path) -> None:
    root, manifest = _weights_root(tmp_path, stages=3)  # 4x, as the bundled VAE
    model = load_from_manifest("bundled", manifest_path=manifest, weights_root=root)
    assert isinstance(model.tiny_vae, TinyAutoencoder) and model.tiny_vae.latent_factor == 4
    latents = torch.randn(2, 4, 16, 16)
    images = model.tiny_vae.decode(latents)
    assert images.shape == model.vae.decode(latents).shape == (2, 3, 64, 64)
    assert images.dtype == torch.float32 and 0 <= float(images.min()) and float(images.max()) <= 1
    assert model.tiny_vae.encode(images).shape == (2, 4, 16, 16)


@pytest.mark.skipif(not (ROOT / "weights" / "bundled" / "model_index.json").exists(), reason="the bundled model is not in this checkout")
def test_a_tiny_decoder_of_another_latent_factor_is_refused_by_name(tmp_path: Path) -> None:
    root, manifest = _weights_root(tmp_path, stages=4)  # 8x: SD's, not the bundled model's
    with pytest.raises(WeightsError, match="bundled-tiny: a tiny decoder of 4 latent channels at 8x"):
        load_from_manifest("bundled", manifest_path=manifest, weights_root=root)


class ShiftedVAE(KnownVAE):
    """A stand-in tiny decoder: the known decode, brighter by a constant, so its images are told apart."""

    def decode(self, latents: Tensor, *, force_fp32: bool = False) -> Tensor:
        return (super().decode(latents, force_fp32=force_fp32) + 0.25).clamp(0, 1)


def _model_with_tiny() -> Any:
    model = known_model()
    model.tiny_vae = ShiftedVAE()
    return model


async def _pixels(client: Any, body: dict[str, Any]) -> Tensor:
    import io

    import numpy as np
    from PIL import Image

    response = await client.post("/generate", json=body, headers={"Accept": "image/png"})
    assert response.status_code == 200, response.text
    return torch.from_numpy(np.array(Image.open(io.BytesIO(response.content)).convert("RGB"))).float()


@pytest.mark.anyio
async def test_a_model_without_a_tiny_decoder_refuses_it_by_field() -> None:
    async with serve() as s:
        response = await s.client.post("/generate", json={"prompt": "a red circle", "decoder": "tiny"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "decoder" and "no tiny decoder" in error["message"]
        assert s.denoiser.calls == []  # refused before any model work
        bad = await s.client.post("/generate", json={"prompt": "a red circle", "decoder": "fast"})
        assert bad.status_code == 422 and "decoder" in bad.text
        info = (await s.client.get("/v1/models")).json()["models"][0]
        assert info["decoders"] == ["full"]


@pytest.mark.anyio
async def test_tiny_and_full_requests_batched_together_decode_apart() -> None:
    model = _model_with_tiny()
    full_vae, tiny_vae = model.vae, model.tiny_vae
    async with serve(model) as s:
        info = (await s.client.get("/v1/models")).json()["models"][0]
        assert info["decoders"] == ["full", "tiny"]
        body = {"prompt": "a red circle", "seed": 5, "steps": 4, "width": 8 * FACTOR, "height": 8 * FACTOR}
        alone_full = await _pixels(s.client, body)
        alone_tiny = await _pixels(s.client, {**body, "decoder": "tiny"})
        assert tiny_vae.decode_calls == [1] and full_vae.decode_calls == [1]
        # the same seed and prompt: same latents, so the tiny image is the full one shifted by 0.25 (64 in 0-255)
        assert torch.allclose(alone_tiny, (alone_full + 64).clamp(max=255), atol=1)
        together = await asyncio.gather(*[_pixels(s.client, {**body, "decoder": d}) for d in ("full", "tiny", "full", "tiny")])
        assert torch.equal(together[0], alone_full) and torch.equal(together[2], alone_full)
        assert torch.equal(together[1], alone_tiny) and torch.equal(together[3], alone_tiny)
        assert sum(tiny_vae.decode_calls) == 3 and sum(full_vae.decode_calls) == 3  # never each other's rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the decoder levers are CUDA-only")
@pytest.mark.parametrize("mode", ["graphs", "compile", "compile_graphs"])
def test_the_decoder_lever_wraps_the_tiny_decoder_too_and_keeps_its_images(mode: str) -> None:
    from pipelines.accel import BucketedDecoder, enable_vae_decoder_accel

    model = known_model()
    model.device = torch.device("cuda")
    model.tiny_vae = TinyAutoencoder(_tiny_autoencoder(4).to("cuda", torch.float16))
    latents = torch.randn(3, 4, 16, 16, device="cuda")
    eager = model.tiny_vae.decode(latents)
    assert enable_vae_decoder_accel(model, mode)
    assert isinstance(model.tiny_vae.vae.decoder, BucketedDecoder)
    for rows in (3, 1, 3):  # a padded bucket, a single row, a replay
        images = model.tiny_vae.decode(latents[:rows])
        assert images.shape == (rows, 3, 128, 128)
        assert float((images - eager[:rows]).abs().max()) < 0.02  # fp16 rounding (compile fuses elementwise work)


@pytest.mark.anyio
async def test_the_warm_up_decodes_every_bucket_through_the_tiny_decoder_too() -> None:
    from tests.server.conftest import until

    model = _model_with_tiny()
    full_vae, tiny_vae = model.vae, model.tiny_vae
    async with serve(model, warm_up=True, max_batch=4, pad_to_bucket=True) as s:
        await until(lambda: s.engine.ready)
        assert sorted(full_vae.decode_calls) == sorted(tiny_vae.decode_calls) == [1, 2, 4]  # each bucket, each decoder
