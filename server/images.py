"""Image bytes <-> uint8 arrays with Pillow: base64 inputs, PNG/JPEG/WebP outputs. No torch."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image

from server.errors import InvalidRequest

MAX_INPUT_PIXELS = 4096 * 4096  # larger inputs are refused before decoding (decompression bombs)
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


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


def encode_image(pixels: np.ndarray, output_format: str) -> bytes:
    """(H, W, 3) uint8 -> PNG / JPEG / WebP bytes."""
    image = Image.fromarray(pixels, mode="RGB")
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG", compress_level=1)  # speed over size: served, not archived
    elif output_format == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    elif output_format == "webp":
        image.save(buffer, format="WEBP", quality=90)
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return buffer.getvalue()


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
