"""The KL autoencoder (Rombach et al. 2022, sec. 3) between pixels in [0, 1] and scaled latents.

    latents = (E(2 * image - 1) - shift) * scaling_factor
    image   = (D(latents / scaling_factor + shift) + 1) / 2, clamped to [0, 1]

Some VAEs overflow in fp16 (SDXL's: `force_upcast` in its config): those decode in fp32.
`decode(..., force_fp32=True)` is the one-time retry after a NaN output.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from pipelines.model import module_dtype


def has_nan(images: Tensor) -> Tensor:
    """(B,) bool: rows holding any NaN or inf."""
    return ~torch.isfinite(images.flatten(1)).all(dim=1)


def _decode(vae: torch.nn.Module, z: Tensor, rows: int | None) -> Tensor:
    """vae.decode(z) as an image tensor; with `rows`, on exactly that many rows per call (batch-invariant)."""
    if rows is None:
        return vae.decode(z, return_dict=False)[0]
    from pipelines.accel import fixed_rows_call

    return fixed_rows_call(lambda chunk: vae.decode(chunk, return_dict=False)[0], rows, z)


class KLAutoencoder:
    """AutoencoderKL with its scaling (and shift) factor, decode to [0, 1], fp32 when needed."""

    def __init__(
        self,
        vae: torch.nn.Module,
        *,
        scaling_factor: float | None = None,
        shift_factor: float | None = None,
        upcast: bool | None = None,
    ) -> None:
        config = vae.config
        self.scaling_factor = float(scaling_factor if scaling_factor is not None else config.scaling_factor)
        shift = shift_factor if shift_factor is not None else getattr(config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0
        self.latent_channels = int(config.latent_channels)
        self.latent_factor = 2 ** (len(config.block_out_channels) - 1)  # pixels per latent cell
        # upcast=None reads the config's force_upcast. diffusers' AutoencoderKL config defaults it to
        # True and only its SDXL pipeline honours it, so assemble passes upcast explicitly.
        # A NaN retry (decode(force_fp32=True)) is per call: it never makes fp32 sticky.
        force_upcast = bool(getattr(config, "force_upcast", False)) if upcast is None else upcast
        self.upcast = force_upcast and vae.dtype == torch.float16
        self.vae = vae.eval()
        self._fp32: torch.nn.Module | None = None
        self.decode_rows: int | None = None  # settings.batch_invariant: decode exactly this many rows per call
        if self.upcast:
            self._fp32_copy()

    def _fp32_copy(self) -> torch.nn.Module:
        # a float32 VAE is its own fp32 copy, unless its decoder computes in bf16 (pipelines.accel.CpuBf16Decoder,
        # whose deep copy is the plain decoder)
        if self.vae.dtype == torch.float32 and not getattr(getattr(self.vae, "decoder", None), "computes_in_bf16", False):
            return self.vae
        if self._fp32 is None:
            self._fp32 = copy.deepcopy(self.vae).float().eval()
        return self._fp32

    @torch.no_grad()
    def decode(self, latents: Tensor, *, force_fp32: bool = False) -> Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, h * f, w * f) float32 images in [0, 1]."""
        vae = self._fp32_copy() if (force_fp32 or self.upcast) else self.vae
        z = (latents / self.scaling_factor + self.shift_factor).to(module_dtype(vae))
        decoded = _decode(vae, z, self.decode_rows)  # (B, 3, H, W) in [-1, 1]
        return (decoded.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) images in [0, 1] -> scaled latents; a sample of q(z | x) drawn from `generator`.

        The posterior sample uses the generator's device (CPU generators stay reproducible
        across devices); without a generator the posterior mean is returned.
        """
        vae = self._fp32_copy() if self.upcast else self.vae
        device = next(vae.parameters()).device
        dist = vae.encode((images * 2 - 1).to(device, vae.dtype)).latent_dist
        if generator is None:
            z = dist.mean
        else:
            eps = torch.randn(dist.mean.shape, generator=generator, device=generator.device, dtype=torch.float32)
            z = dist.mean + dist.std * eps.to(device, dist.mean.dtype)
        return ((z.float() - self.shift_factor) * self.scaling_factor)


class TinyAutoencoder(KLAutoencoder):
    """A distilled tiny autoencoder (diffusers' AutoencoderTiny, the TAESD layout) on the same scaled
    latents as the model's KL autoencoder: a fast, approximate decoder for fast mode.

    It reads the scaled latents directly (its own scaling factor is 1, shift 0, so KLAutoencoder's decode
    serves it as is), as TAESD / TAESDXL do for the SD and SDXL latents; its decoder ends in [-1, 1]
    without a clamp. Its encode is deterministic.
    Every convolution runs at <= 64 channels, so at 512x512 it costs ~1/20 of the SD VAE decoder's
    arithmetic (the bundled model's KL decoder is itself small: there both cost ~2 GFLOP per image);
    the image differs from the KL decoder's (its quality cost is measured, see README).
    """

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__(vae, scaling_factor=1.0, shift_factor=0.0, upcast=False)  # the scaled latents as they are
        config = vae.config
        self.latent_factor = int(config.upsampling_scaling_factor) ** (len(config.decoder_block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) images in [0, 1] -> scaled latents (deterministic: `generator` is not used)."""
        device = next(self.vae.parameters()).device
        return self.vae.encode((images * 2 - 1).to(device, module_dtype(self.vae))).latents.float()
