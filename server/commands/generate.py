"""`darkroom generate PROMPT -o FILE`: one image from a prompt, no server.

The model is chosen as `darkroom serve` chooses it (server.models): the named model through the
weights manifest, else the manifest's default, else a loudly labelled tiny random model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.model import LoadedModel

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def save_image(image: torch.Tensor, path: str | Path, *, quality: int = 95) -> Path:
    """Write one (3, H, W) or (1, 3, H, W) image in [0, 1] as PNG, JPEG or WebP (by the file suffix)."""
    path = Path(path)
    image_format = IMAGE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"output must end in one of {sorted(IMAGE_FORMATS)}, got {path.name!r}")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save_image writes one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
    array = np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())  # (H, W, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {} if image_format == "PNG" else {"quality": quality}
    Image.fromarray(array, mode="RGB").save(path, format=image_format, **options)
    return path


def _load_model(args: argparse.Namespace) -> tuple[LoadedModel, str | None]:
    """The model serve would load for these arguments, and a notice when it is a tiny random one."""
    if args.model == "tiny-sdxl":
        from pipelines.tiny import tiny_sdxl

        return tiny_sdxl(), "*** 'tiny-sdxl' is a TINY RANDOM MODEL (untrained; its images are noise). ***"
    from server.models import load_served_model
    from server.settings import Settings

    # DARKROOM_* settings, overridden by the command line where given
    overrides = {k: v for k in ("manifest", "model") if (v := getattr(args, k, None)) is not None}
    return load_served_model(Settings(**overrides))  # type: ignore[arg-type]


def main(args: argparse.Namespace) -> int:
    """Generate one image and write it to args.output; exit 2 on bad input."""
    from pipelines.text_to_image import text_to_image

    if Path(args.output).suffix.lower() not in IMAGE_FORMATS:
        print(f"darkroom generate: --output must end in one of {sorted(IMAGE_FORMATS)}", file=sys.stderr)
        return 2
    model, notice = _load_model(args)
    if notice:
        print(notice, file=sys.stderr)
    try:
        images, meta = text_to_image(
            model,
            args.prompt,
            negative_prompt=args.negative_prompt,
            sampler=args.sampler,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            width=args.width,
            height=args.height,
        )
    except ValueError as error:
        print(f"darkroom generate: {error}", file=sys.stderr)
        return 2
    path = save_image(images[0], args.output)
    truncated = " (prompt truncated to 77 tokens)" if meta["prompt_truncated"] else ""
    print(
        f"wrote {path} ({meta['width']}x{meta['height']}, model {meta['model']}, sampler {meta['sampler']}, "
        f"{meta['steps']} steps, guidance {meta['guidance']}, seed {meta['seed']}){truncated}"
    )
    return 0
