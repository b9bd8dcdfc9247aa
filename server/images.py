"""Image bytes <-> uint8 arrays with Pillow: base64 inputs, PNG/JPEG/WebP outputs.

Torch is imported only inside `encode_jpeg_cuda` (the engine's GPU path): the HTTP side
imports this module for its media types and never loads torch through it.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from server.errors import InvalidRequest

if TYPE_CHECKING:
    from torch import Tensor

MAX_INPUT_PIXELS = 4096 * 4096  # larger inputs are refused before decoding (decompression bombs)
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
DEFAULT_QUALITY = 90  # JPEG / WebP quality when the request names none


def decode_base64_image(data: str, *, field: str, width: int, height: int) -> np.ndarray:
    """Base64 (optionally a data: URL) PNG/JPEG/WebP -> (height, width, 3) uint8, resized to fit."""
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequest(f"'{field}' is not valid base64: {e}", field=field) from None
    if not raw:
        raise InvalidRequest(f"'{field}' is empty", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                if image.format not in ("PNG", "JPEG", "WEBP"):
                    raise InvalidRequest(
                        f"'{field}' must be PNG, JPEG or WebP, not {image.format}", field=field
                    )
                if image.width * image.height > MAX_INPUT_PIXELS:
                    raise InvalidRequest(
                        f"'{field}' is {image.width}x{image.height}; at most {MAX_INPUT_PIXELS} pixels",
                        field=field,
                    )
                rgb = image.convert("RGB")
                if rgb.size != (width, height):
                    rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
                return np.asarray(rgb, dtype=np.uint8).copy()
    except InvalidRequest:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise InvalidRequest(f"'{field}' could not be decoded as an image: {type(e).__name__}", field=field) from None


def encode_image(pixels: np.ndarray, output_format: str, quality: int | None = None) -> bytes:
    """(H, W, 3) uint8 -> PNG / JPEG / WebP bytes; `quality` (1-100) for JPEG / WebP, PNG is lossless."""
    image = Image.fromarray(pixels, mode="RGB")
    buffer = io.BytesIO()
    q = DEFAULT_QUALITY if quality is None else quality
    if output_format == "png":
        image.save(buffer, format="PNG", compress_level=1)  # speed over size: served, not archived
    elif output_format == "jpeg":
        image.save(buffer, format="JPEG", quality=q)
    elif output_format == "webp":
        image.save(buffer, format="WEBP", quality=q)
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return buffer.getvalue()


def encode_jpeg_cuda(images: Tensor, quality: int | None = None) -> list[bytes] | None:
    """(B, 3, H, W) uint8 CUDA images -> JPEG bytes, encoded on the GPU (nvJPEG) in one batched call.

    Only the compressed bytes cross to the host (a 512x512 JPEG is a few tens of KB against
    768 KB of pixels), and no CPU thread spends milliseconds per image. None when the images
    are not on CUDA or torchvision's nvJPEG encoder is missing or fails: the caller then encodes
    with Pillow (`encode_image`), whose output differs by JPEG encoder rounding only.
    """
    if not images.is_cuda:
        return None
    try:
        from torchvision.io import encode_jpeg
    except ImportError:
        return None
    try:
        encoded = encode_jpeg([row.contiguous() for row in images], quality=DEFAULT_QUALITY if quality is None else quality)
        return [e.cpu().numpy().tobytes() for e in encoded]
    except Exception:  # noqa: BLE001 - a torchvision built without nvJPEG, or a driver without it: use Pillow
        return None


def preview_png(pixels: np.ndarray, max_side: int) -> bytes:
    """A small PNG of (H, W, 3) uint8 pixels, the longer side at most `max_side`."""
    image = Image.fromarray(pixels, mode="RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """Bytes -> base64 text (standard alphabet, padded)."""
    return base64.b64encode(data).decode("ascii")
