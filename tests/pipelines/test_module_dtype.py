"""pipelines.model.module_dtype: the cached `module.dtype` follows casts."""

from __future__ import annotations

import torch

from pipelines.model import module_dtype


def test_module_dtype_matches_and_follows_casts() -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4, layers_per_block=1)
    assert module_dtype(vae) == vae.dtype == torch.float32
    assert module_dtype(vae.half()) == vae.dtype == torch.float16  # a cast is seen on the next read
    assert module_dtype(vae.to(torch.bfloat16)) == torch.bfloat16
    assert module_dtype(vae.float()) == torch.float32


def test_module_dtype_of_a_module_without_parameters() -> None:
    class Empty(torch.nn.Module):
        dtype = torch.float16

    assert module_dtype(Empty()) == torch.float16
