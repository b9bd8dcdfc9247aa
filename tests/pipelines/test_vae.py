"""KL autoencoder wrapper: scaling / shift factors, [0, 1] range, fp32 retry, NaN check, seeded encode."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from pipelines.vae import KLAutoencoder, has_nan


def _vae(**config: object) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        **config,
    ).eval()


def test_decode_scales_shifts_and_maps_to_unit_range() -> None:
    vae = _vae(scaling_factor=0.5, shift_factor=0.25)
    wrapper = KLAutoencoder(vae)
    assert (wrapper.latent_factor, wrapper.latent_channels) == (2, 4)
    latents = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        raw = vae.decode(latents / 0.5 + 0.25).sample
    images = wrapper.decode(latents)
    assert images.shape == (2, 3, 8, 8)
    assert torch.allclose(images, (raw / 2 + 0.5).clamp(0, 1), atol=1e-6)
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_encode_matches_diffusers_posterior_sample_from_the_same_generator() -> None:
    vae = _vae(scaling_factor=0.18215)
    wrapper = KLAutoencoder(vae)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = wrapper.encode(image, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        dist = vae.encode(image * 2 - 1).latent_dist
        theirs = dist.sample(generator=torch.Generator().manual_seed(2)) * 0.18215
        mean = dist.mean * 0.18215
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(wrapper.encode(image), mean, atol=1e-6)


def test_fp16_vae_with_force_upcast_decodes_in_fp32() -> None:
    vae = _vae(force_upcast=True).half()
    wrapper = KLAutoencoder(vae)
    reference = KLAutoencoder(_vae(force_upcast=True))
    latents = torch.randn(1, 4, 4, 4)
    images = wrapper.decode(latents.half())
    assert images.dtype == torch.float32
    # the fp32 copy of fp16 weights: equal to the fp32 model up to fp16 weight rounding only
    assert (images - reference.decode(latents)).abs().max().item() < 5e-3
    assert next(vae.parameters()).dtype == torch.float16  # the served module is left as loaded


def test_has_nan_flags_rows() -> None:
    images = torch.zeros(3, 3, 2, 2)
    images[1, 0, 0, 0] = float("nan")
    images[2, 2, 1, 1] = float("inf")
    assert has_nan(images).tolist() == [False, True, True]
