"""What a denoiser is conditioned on, as one batchable object.

Every field is batched along dim 0 (one row per latent) or is None. Requests are batched by
concatenating their conditionings row-wise (`Conditioning.cat`) and split back with `rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch
from torch import Tensor


def to_device(t: Tensor, device: torch.device | str) -> Tensor:
    """`t.to(device)`, without a host synchronisation when a CPU tensor goes to CUDA. A blocking copy waits for the
    card to drain its queue; at batch 1, where the host launches while the card computes, each such wait serialises
    the two (six per guided step before the sampling path used this). Asynchronous from pageable memory, the driver
    stages the source before it returns, so the source may go at once; staging through pinned memory instead
    cost ~0.25 ms per copy on an H200 host (training/results/call32/record.md)."""
    device = torch.device(device)
    if t.device.type == "cpu" and device.type == "cuda":
        return t.to(device, non_blocking=True)
    return t.to(device)


@dataclass(frozen=True)
class Conditioning:
    """Per-row conditioning of one denoiser call. Shapes are (B, ...) for B latent rows."""

    text_embeddings: Tensor | None = None  # (B, L, D) cross-attention context
    text_mask: Tensor | None = None  # (B, L) 1 = real token (PixArt / T5)
    pooled_text_embeddings: Tensor | None = None  # (B, D_pool) SDXL text_embeds
    time_ids: Tensor | None = None  # (B, 6) SDXL micro-conditioning
    class_labels: Tensor | None = None  # (B,) int64, DiT
    control_image: Tensor | None = None  # (B, 3, H, W) in [0, 1], ControlNet
    control_scale: Tensor | None = None  # (B,) ControlNet conditioning scale

    @property
    def batch_size(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return int(value.shape[0])
        raise ValueError("empty Conditioning has no batch size")

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate row-wise; every item must set the same fields with matching trailing shapes."""
        out: dict[str, Tensor | None] = {}
        for f in fields(Conditioning):
            values = [getattr(c, f.name) for c in items]
            present = [v is not None for v in values]
            if all(present):
                out[f.name] = torch.cat(values, dim=0)  # type: ignore[arg-type]
            elif any(present):
                raise ValueError(f"Conditioning.cat: field '{f.name}' set on some rows only")
            else:
                out[f.name] = None
        return Conditioning(**out)

    def rows(self, index: slice | Tensor) -> Conditioning:
        """The rows selected by `index` (a slice or an index tensor)."""
        return replace(
            self,
            **{f.name: getattr(self, f.name)[index] for f in fields(self) if getattr(self, f.name) is not None},
        )

    def repeat(self, n: int) -> Conditioning:
        """Each row repeated n times consecutively (one prompt, n images)."""
        return replace(
            self,
            **{
                f.name: getattr(self, f.name).repeat_interleave(n, dim=0)
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        """Move tensors; floating tensors also take `dtype` when given."""

        def move(t: Tensor) -> Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return replace(
            self,
            **{f.name: move(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None},
        )


@dataclass(frozen=True)
class GuidedConditioning:
    """Conditioning for a classifier-free-guided call: B rows, each with its own scale.

    Invariant: `cond` and `uncond` have the same B and the same fields set.
    """

    cond: Conditioning
    uncond: Conditioning | None  # None: no guidance for any row
    guidance_scale: Tensor  # (B,) float; w = 1 means the uncond pass is skipped for that row
    # (B,) bool: rows whose uncond pass runs at this step (guidance interval); None = all with w != 1
    guide: Tensor | None = None
    # (B,) float: classifier-guidance scale and target labels, used by ClassifierGuidance
    classifier_scale: Tensor | None = None
    classifier_labels: Tensor | None = None  # (B, K) long, one label per classifier head

    @property
    def batch_size(self) -> int:
        return int(self.guidance_scale.shape[0])

    @staticmethod
    def cat(items: list[GuidedConditioning]) -> GuidedConditioning:
        def cat_opt(values: list[Tensor | None], name: str) -> Tensor | None:
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"GuidedConditioning.cat: '{name}' set on some rows only")
            return torch.cat(values, dim=0)  # type: ignore[arg-type]

        uncond = [g.uncond for g in items]
        if any(u is None for u in uncond) and not all(u is None for u in uncond):
            raise ValueError("GuidedConditioning.cat: uncond set on some rows only")
        return GuidedConditioning(
            cond=Conditioning.cat([g.cond for g in items]),
            uncond=None if uncond[0] is None else Conditioning.cat(uncond),  # type: ignore[arg-type]
            guidance_scale=torch.cat([g.guidance_scale for g in items]),
            guide=cat_opt([g.guide for g in items], "guide"),
            classifier_scale=cat_opt([g.classifier_scale for g in items], "classifier_scale"),
            classifier_labels=cat_opt([g.classifier_labels for g in items], "classifier_labels"),
        )

    def rows(self, index: slice | Tensor) -> GuidedConditioning:
        def sel(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return GuidedConditioning(
            cond=self.cond.rows(index),
            uncond=None if self.uncond is None else self.uncond.rows(index),
            guidance_scale=self.guidance_scale[index],
            guide=sel(self.guide),
            classifier_scale=sel(self.classifier_scale),
            classifier_labels=sel(self.classifier_labels),
        )


class Denoiser(Protocol):
    """The one contract every model is wrapped into: x = x0 + sigma * eps  ->  x0.

    x: (B, C, H, W) in the variance-exploding view; sigma: (B,) float tensor (per row);
    returns the model's estimate of x0 with x's shape and dtype.
    """

    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor: ...


class GuidedDenoiser(Protocol):
    """A denoiser over GuidedConditioning (CFG and friends are wrappers of this shape)."""

    def __call__(self, x: Tensor, sigma: Tensor, cond: GuidedConditioning) -> Tensor: ...
