"""Sketches of the shapes world: true object masks, stroke images, and masks of generated images.

The control image a user would draw for a scene is its objects' outlines, white strokes on
black (3 channels, 64 x 64, values in [0, 1]). Both the outlines and the filled object masks come
from the renderer's own signed distances (`training.data.object_distances`) at the renderer's own
object placement: `scene_geometry` makes the draws `training.data.render` makes from its
generator, so a (render, masks, sketch) triple made from one generator state describes the same
objects. Training sketches may be jittered like a hand drawing (stroke width 1-2 px, a smooth
wobble of the outline); the IoU target is always the scene's filled
masks, never the jittered strokes.

`extract_mask` segments objects from the background of any image (render or sample) without
knowing the scene: the background is a smooth gradient, so a plane fitted per channel to the
border pixels (refitted without outliers, for objects touching the border) predicts it
everywhere; a pixel is object where its colour distance to that plane exceeds half of the
largest distance nearby (the anti-aliased half-coverage edge) and a floor `BACKGROUND_TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from training.data import (
    IMAGE_SIZE,
    MAX_OBJECTS,
    SceneBatch,
    background,
    object_distances,
    render,
    uniform_source,
)

STROKE_PX = 1.5  # un-jittered outline width
BORDER_PX = 2  # border ring the background plane is fitted to
BACKGROUND_TOLERANCE = 0.15  # colour distance (RGB in [0, 1]) below which a pixel is background
EDGE_WINDOW = 5  # neighbourhood whose largest distance sets the half-coverage threshold


@dataclass(frozen=True)
class Sketched:
    """A rendered scene with what its sketch says: all (B, ...) tensors on the batch's device."""

    images: Tensor  # (B, 3, H, W) renders in [0, 1]
    masks: Tensor  # (B, H, W) bool, union of the filled object shapes
    sketches: Tensor  # (B, 3, H, W) white outlines on black in [0, 1]


def scene_geometry(batch: SceneBatch, generator: torch.Generator, size: int = IMAGE_SIZE) -> Tensor:
    """Signed distances (B, K, H, W) in pixels of every pixel to each object, as `render` places them.

    Draws from `generator` exactly what `render` draws before its colour jitter, in the same
    order (background, centre jitter, radius jitter), so the same generator state gives the same
    geometry. Empty slots get +inf.
    """
    device = batch.shape.device
    b = batch.shape.shape[0]
    uniform = uniform_source(generator, device)
    background(b, size, device, uniform)  # render's first draws
    distance = object_distances(batch, size, uniform) / (size / IMAGE_SIZE)
    empty = (batch.shape < 0).view(b, MAX_OBJECTS, 1, 1)
    return distance.masked_fill(empty, float("inf"))


def strokes(distance: Tensor, generator: torch.Generator | None = None, width: float = STROKE_PX) -> Tensor:
    """Outline images (B, 3, H, W) in [0, 1] from signed distances (B, K, H, W).

    An anti-aliased band |d| < width / 2 around each shape's edge. With a generator, a hand-drawn
    look: per image a stroke width in [1, 2] px and a smooth zero-mean wobble of the distance
    (bilinear 8 x 8 noise, up to 0.5 px). No systematic offset: the model should learn to put
    the edge on the stroke, which the IoU target measures.
    """
    b, k, h, w = distance.shape
    device = distance.device
    half = torch.full((b, 1, 1, 1), width / 2, device=device)
    if generator is not None:
        uniform = uniform_source(generator, device)
        half = 0.5 + 0.5 * uniform(b, 1, 1, 1)
        wobble = F.interpolate(2 * uniform(b * k, 1, 8, 8) - 1, size=(h, w), mode="bilinear", align_corners=False)
        amplitude = 0.5 * uniform(b, 1, 1, 1)
        distance = distance + amplitude * wobble.view(b, k, h, w)
    band = (half + 0.5 - distance.abs()).clamp(0, 1)  # 1 inside the band, ~1 px ramp outside
    outline = band.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    return outline.expand(b, 3, h, w).contiguous()


def filled_masks(distance: Tensor) -> Tensor:
    """(B, H, W) bool: pixels inside any object (signed distance < 0, the half-coverage edge)."""
    return (distance < 0).any(dim=1)


def sketch_scenes(batch: SceneBatch, generator: torch.Generator, jitter: bool = False) -> Sketched:
    """Render scenes and draw their sketches and masks from one generator state."""
    state = generator.get_state()
    images = render(batch, generator)
    replay = torch.Generator(device=generator.device)
    replay.set_state(state)
    distance = scene_geometry(batch, replay)
    return Sketched(images, filled_masks(distance), strokes(distance, generator if jitter else None))


def _border(size: int) -> Tensor:
    ring = torch.zeros(size, size, dtype=torch.bool)
    ring[:BORDER_PX], ring[-BORDER_PX:], ring[:, :BORDER_PX], ring[:, -BORDER_PX:] = True, True, True, True
    return ring


def background_plane(images: Tensor, rounds: int = 3) -> Tensor:
    """Per-image, per-channel plane a + b x + c y fitted to the border pixels: (B, 3, H, W).

    Least squares, refitted `rounds` times on the border pixels whose colour residual is at most
    max(BACKGROUND_TOLERANCE / 2, 3 x the median residual), so objects cut by the border drop out.
    """
    b, c, h, w = images.shape
    device = images.device
    ys, xs = torch.meshgrid(
        torch.linspace(-0.5, 0.5, h, device=device), torch.linspace(-0.5, 0.5, w, device=device), indexing="ij"
    )
    design = torch.stack((torch.ones_like(xs), xs, ys), dim=-1).view(h * w, 3)  # (HW, 3)
    ring = _border(h).to(device).view(-1) if h == w else None
    if ring is None:
        raise ValueError("images must be square")
    a_ring = design[ring]  # (N, 3)
    values = images.float().flatten(2)[:, :, ring].transpose(1, 2)  # (B, N, 3)
    weight = torch.ones(b, a_ring.shape[0], 1, device=device)
    for _ in range(rounds + 1):
        aw = a_ring.unsqueeze(0) * weight  # (B, N, 3)
        gram = aw.transpose(1, 2) @ a_ring.unsqueeze(0) + 1e-6 * torch.eye(3, device=device)
        coef = torch.linalg.solve(gram, aw.transpose(1, 2) @ values)  # (B, 3 params, 3 channels)
        residual = (a_ring.unsqueeze(0) @ coef - values).norm(dim=-1)  # (B, N)
        cut = torch.maximum(
            torch.full((b, 1), BACKGROUND_TOLERANCE / 2, device=device), 3 * residual.median(dim=1, keepdim=True).values
        )
        weight = (residual <= cut).float().unsqueeze(-1)
    return (design.unsqueeze(0) @ coef).transpose(1, 2).reshape(b, c, h, w)


def extract_mask(images: Tensor) -> Tensor:
    """(B, H, W) bool object masks of images (B, 3, H, W) in [0, 1], from their own border."""
    distance = (images.float() - background_plane(images)).norm(dim=1, keepdim=True)  # (B, 1, H, W)
    local_max = F.max_pool2d(distance, EDGE_WINDOW, stride=1, padding=EDGE_WINDOW // 2)
    return ((distance > 0.5 * local_max) & (distance > BACKGROUND_TOLERANCE)).squeeze(1)


def iou(a: Tensor, b: Tensor) -> Tensor:
    """Per-image intersection over union of bool masks (B, H, W); 1 where both are empty."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
