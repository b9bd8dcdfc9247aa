"""Guidance as denoiser wrappers: classifier-free and classifier guidance, per row.

Notation: x0_c, x0_u are the conditional and unconditional estimates, w the guidance scale.
- Classifier-free guidance (Ho & Salimans 2022, eq. 6, written on x0, which is affine in eps):
      x0 = x0_u + w (x0_c - x0_u)
  The cond rows and the guided rows' uncond rows go through ONE forward pass; rows with w == 1,
  or whose `guide` flag is off (guidance interval), skip their uncond row, so the batch shrinks.
- Guidance interval (Kynkaanniemi et al. 2024): guide only while sigma is in [sigma_lo, sigma_hi].
- Classifier guidance (Dhariwal & Nichol 2021, eq. 10-14, as Tweedie's formula):
      E[x0 | x, y] = E[x0 | x] + sigma^2 grad_x log p(y | x, sigma)
  so x0 += w sigma^2 grad_x log p(y | x, sigma) for a classifier trained on noisy x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace

import torch
from torch import Tensor

from pipelines.conditioning import (
    Conditioning,
    Denoiser,
    GuidedConditioning,
    GuidedDenoiser,
    to_device,
)

# (x, sigma) -> logits (B, K) or one (B, K_i) tensor per head; x in the VE view, sigma (B,)
NoisyClassifier = Callable[[Tensor, Tensor], Tensor | Sequence[Tensor]]


def guided_rows(cond: GuidedConditioning) -> Tensor:
    """(B,) bool: rows whose uncond pass runs (guided, w != 1, and an uncond exists)."""
    scale = cond.guidance_scale
    if cond.uncond is None:
        return torch.zeros(scale.shape[0], dtype=torch.bool, device=scale.device)
    rows = scale != 1.0
    if cond.guide is not None:
        rows = rows & cond.guide.to(rows.device)
    return rows


def cfg(denoise: Denoiser) -> GuidedDenoiser:
    """Classifier-free guidance over `denoise` with one forward pass per call (Ho & Salimans 2022, eq. 6)."""

    def guided(x: Tensor, sigma: Tensor, cond: GuidedConditioning) -> Tensor:
        rows = x.shape[0]
        # (G,) rows with an uncond pass, picked on the host where the scales live: no round trip to the card
        index_cpu = guided_rows(cond).cpu().nonzero().flatten()
        if index_cpu.numel() == 0:
            return denoise(x, sigma, cond.cond)
        assert cond.uncond is not None
        index = to_device(index_cpu, x.device)
        x_in = torch.cat([x, x[index]])  # (B + G, C, h, w)
        on = {x.device: index}  # the index on each device that needs it, copied once
        sigma_in = torch.cat([sigma, sigma[_index_on(on, index_cpu, sigma.device)]])
        cond_in = Conditioning.cat([cond.cond, _rows_on(cond.uncond, index_cpu, on)])
        out = denoise(x_in, sigma_in, cond_in)
        x0_c, x0_u = out[:rows], out[rows:]
        w = to_device(cond.guidance_scale, x.device).to(x.dtype)[index].view(-1, *([1] * (x.dim() - 1)))
        x0 = x0_c.clone()
        x0[index] = x0_u + w * (x0_c[index] - x0_u)
        return x0

    return guided


def _index_on(on: dict[torch.device, Tensor], index: Tensor, device: torch.device) -> Tensor:
    """`index` on `device`, from `on` or copied there once (and kept in `on`)."""
    if device not in on:
        on[device] = to_device(index, device)
    return on[device]


def _rows_on(cond: Conditioning, index: Tensor, on: dict[torch.device, Tensor]) -> Conditioning:
    """Rows by an index tensor, each field indexed on its own device (the index copied there once: `on`)."""
    picked = {}
    for f in fields(cond):
        value = getattr(cond, f.name)
        if value is not None:
            picked[f.name] = value[_index_on(on, index, value.device)]
    return replace(cond, **picked)


def in_guidance_interval(sigma: Tensor, sigma_lo: float = 0.0, sigma_hi: float = float("inf")) -> Tensor:
    """(B,) bool: rows whose sigma lies in [sigma_lo, sigma_hi] (Kynkaanniemi et al. 2024, eq. 3)."""
    return (sigma >= sigma_lo) & (sigma <= sigma_hi)


def guided_steps(steps: int, unguided_last_steps: int = 0) -> list[bool]:
    """Which of `steps` steps guide: all but the last `unguided_last_steps` (no uncond pass there)."""
    if unguided_last_steps < 0:
        raise ValueError(f"unguided_last_steps must be >= 0, got {unguided_last_steps}")
    return [i < steps - unguided_last_steps for i in range(steps)]


def classifier_log_prob(logits: Tensor | Sequence[Tensor], labels: Tensor) -> Tensor:
    """(B,) sum over heads of log p(label_k | x) for logits per head and labels (B, K)."""
    heads = [logits] if isinstance(logits, Tensor) else list(logits)
    if labels.dim() == 1:
        labels = labels[:, None]
    total = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device)
    for k, head in enumerate(heads):
        log_p = torch.log_softmax(head.float(), dim=-1)  # (B, K_k)
        total = total + log_p.gather(1, labels[:, k : k + 1].to(log_p.device)).squeeze(1).to(total.device)
    return total


def classifier_guidance(
    denoise: Callable[[Tensor, Tensor, GuidedConditioning], Tensor], classifier: NoisyClassifier
) -> GuidedDenoiser:
    """x0 += w sigma^2 grad_x log p(y | x, sigma) on rows with a classifier scale (Dhariwal & Nichol 2021).

    Only rows with w != 0 go through the classifier, so rows without classifier guidance keep the
    guided denoiser's x0 exactly and pay nothing, whatever else shares their batch.
    """

    def guided(x: Tensor, sigma: Tensor, cond: GuidedConditioning) -> Tensor:
        x0 = denoise(x, sigma, cond)
        if cond.classifier_scale is None or cond.classifier_labels is None:
            return x0
        scale = cond.classifier_scale.to(x.device, torch.float32)
        index = (scale != 0).nonzero().flatten()  # (G,) rows with classifier guidance
        if index.numel() == 0:
            return x0
        sigma_g = sigma.to(x.device)[index]
        with torch.enable_grad():
            x_in = x[index].detach().float().requires_grad_(True)
            labels = cond.classifier_labels.to(x.device)[index]
            log_p = classifier_log_prob(classifier(x_in, sigma_g), labels)
            (grad,) = torch.autograd.grad(log_p.sum(), x_in)  # rows are independent: d sum = per row
        shape = (-1, *([1] * (x.dim() - 1)))
        shift = scale[index].view(shape) * (sigma_g.to(torch.float32) ** 2).view(shape) * grad
        x0 = x0.clone()
        x0[index] = x0[index] + shift.to(x0.dtype)
        return x0

    return guided
