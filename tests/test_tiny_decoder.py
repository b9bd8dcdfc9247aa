"""The tiny decoder for fast mode: pipelines.vae.TinyAutoencoder over diffusers' AutoencoderTiny.

The shipped weights/bundled_tiny_vae (training/tiny_decoder.py) decodes the bundled KL encoder's
latents of real renders at a stated PSNR, a stated margin under the KL decoder's; a tiny random
AutoencoderTiny checks the wrapper's exact values, shapes and fp32 retry path. CPU, fp32.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from torch import Tensor

from pipelines.vae import KLAutoencoder, TinyAutoencoder
from training.tiny_decoder import psnr_db

ROOT = Path(__file__).resolve().parents[1]
TINY_VAE = ROOT / "weights" / "bundled_tiny_vae"
BUNDLED_VAE = ROOT / "weights" / "bundled" / "vae"
# Measured with the shipped weights (GPU call 24: 5,589 steps at batch 256) on the 32 held-out
# renders below, posterior-mean latents, CPU fp32: tiny decoder 38.3 dB, KL decoder 42.3 dB
# (gap 3.9 dB), tiny encoder -> tiny decoder 36.7 dB, tiny encoder latent RMSE 0.068 (the latents'
# std is 1.01). The bounds leave 2 dB of PSNR (and ~1.8x the RMSE) of margin.
MIN_TINY_PSNR_DB = 36.3
MAX_GAP_TO_KL_DB = 6.0
MIN_ROUND_TRIP_PSNR_DB = 34.7
MAX_ENCODER_RMSE = 0.12


@pytest.fixture(scope="module")
def renders_and_latents() -> tuple[Tensor, Tensor, KLAutoencoder]:
    """32 held-out renders (seed 11) in [0, 1] and their scaled posterior-mean latents."""
    from training.data import render, sample_scenes, scenes_to_batch

    kl = KLAutoencoder(AutoencoderKL.from_pretrained(BUNDLED_VAE).float(), upcast=False)
    scenes = sample_scenes(11, 32, "heldout")
    images = render(scenes_to_batch(scenes), torch.Generator().manual_seed(11))  # (32, 3, 64, 64)
    return images, kl.encode(images), kl


@pytest.mark.skipif(
    not (TINY_VAE / "config.json").exists(), reason="weights/bundled_tiny_vae not present"
)
def test_shipped_tiny_decoder_reads_the_bundled_latents(
    renders_and_latents: tuple[Tensor, Tensor, KLAutoencoder],
) -> None:
    images, latents, kl = renders_and_latents
    tiny = TinyAutoencoder(AutoencoderTiny.from_pretrained(TINY_VAE, torch_dtype=torch.float32))
    assert (tiny.latent_channels, tiny.latent_factor, tiny.scaling_factor) == (4, 4, 1.0)
    assert latents.shape == (32, 4, 16, 16)

    decoded = tiny.decode(latents)
    assert decoded.shape == (32, 3, 64, 64) and decoded.dtype == torch.float32
    assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0
    tiny_db, kl_db = psnr_db(decoded, images), psnr_db(kl.decode(latents), images)
    assert tiny_db > MIN_TINY_PSNR_DB, f"tiny decoder {tiny_db:.2f} dB (KL {kl_db:.2f} dB)"
    assert kl_db - tiny_db < MAX_GAP_TO_KL_DB, f"tiny decoder {tiny_db:.2f} dB vs KL {kl_db:.2f} dB"

    encoded = tiny.encode(images)  # the tiny encoder regresses the KL posterior mean
    assert encoded.shape == (32, 4, 16, 16)
    assert float(((encoded - latents) ** 2).mean().sqrt()) < MAX_ENCODER_RMSE
    assert psnr_db(tiny.decode(encoded), images) > MIN_ROUND_TRIP_PSNR_DB


def _random_tiny() -> AutoencoderTiny:
    """Two stages of 8 channels: (B, 3, H, W) <-> (B, 4, H/2, W/2)."""
    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    ).eval()


def test_random_tiny_round_trip_matches_diffusers_exactly() -> None:
    vae = _random_tiny()
    wrapper = TinyAutoencoder(vae)
    assert (wrapper.latent_channels, wrapper.latent_factor) == (4, 2)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    latents = wrapper.encode(images, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_latents = vae.encode(images * 2 - 1).latents
        raw = vae.decode(latents * 8).sample  # large latents: raw output leaves [-1, 1]
    assert latents.shape == (2, 4, 8, 8)
    assert torch.equal(latents, expected_latents)
    assert torch.equal(wrapper.encode(images), latents)  # deterministic: the generator is not used
    decoded = wrapper.decode(latents * 8)
    assert decoded.shape == (2, 3, 16, 16)
    assert torch.allclose(decoded, (raw / 2 + 0.5).clamp(0, 1), atol=1e-6)
    assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tiny_decodes_in_fp32_on_request(dtype: torch.dtype) -> None:
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    half = _random_tiny().to(dtype)
    try:
        half.decode(latents.to(dtype))
    except RuntimeError as exc:  # an op this CPU build lacks in that dtype
        pytest.skip(f"{dtype} convolutions unsupported on this CPU: {exc}")
    reference = TinyAutoencoder(
        _random_tiny().to(dtype).float()
    )  # fp32 with the same rounded weights
    wrapper = TinyAutoencoder(half)
    images = wrapper.decode(latents, force_fp32=True)
    assert images.dtype == torch.float32
    assert torch.allclose(images, reference.decode(latents), atol=1e-6)
    assert next(half.parameters()).dtype == dtype  # the served module stays as loaded
    coarse = wrapper.decode(latents)  # in the module's dtype, then float32 out
    assert coarse.dtype == torch.float32
    assert (coarse - images).abs().max().item() < 0.05
