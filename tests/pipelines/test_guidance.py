"""Classifier-free and classifier guidance wrappers on denoisers whose outputs are known exactly."""

from __future__ import annotations

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning, GuidedConditioning
from pipelines.guidance import cfg, classifier_guidance, guided_steps, in_guidance_interval


class CountingDenoiser:
    """x0 = x * scale_row + text_embeddings[:, 0, 0] (per row), counting calls and rows."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x: Tensor, sigma: Tensor, cond: Conditioning) -> Tensor:
        self.calls.append(x.shape[0])
        offset = cond.text_embeddings[:, 0, 0].view(-1, 1, 1, 1)
        return x / (1 + sigma.view(-1, 1, 1, 1).to(x.dtype)) + offset


def _conds(b: int) -> tuple[Conditioning, Conditioning]:
    cond = Conditioning(text_embeddings=torch.arange(1.0, b + 1).view(b, 1, 1).expand(b, 2, 3).clone())
    uncond = Conditioning(text_embeddings=torch.full((b, 2, 3), -1.0))
    return cond, uncond


def test_cfg_is_one_forward_pass_with_per_row_scales() -> None:
    model = CountingDenoiser()
    guided = cfg(model)
    x = torch.randn(3, 4, 2, 2)
    sigma = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    cond, uncond = _conds(3)
    w = torch.tensor([2.0, 5.0, 7.5])
    x0 = guided(x, sigma, GuidedConditioning(cond=cond, uncond=uncond, guidance_scale=w))
    assert model.calls == [6]  # 3 cond rows + 3 uncond rows, one pass
    base = x / (1 + sigma.view(-1, 1, 1, 1).float())
    # x0_c = base + (i + 1), x0_u = base - 1  ->  x0 = base - 1 + w (i + 2)
    expected = base - 1 + w.view(-1, 1, 1, 1) * torch.tensor([2.0, 3.0, 4.0]).view(-1, 1, 1, 1)
    assert torch.allclose(x0, expected, atol=1e-6)


def test_rows_with_unit_scale_or_guide_off_skip_their_uncond_row() -> None:
    model = CountingDenoiser()
    guided = cfg(model)
    x = torch.randn(4, 4, 2, 2)
    sigma = torch.ones(4, dtype=torch.float64)
    cond, uncond = _conds(4)
    w = torch.tensor([1.0, 3.0, 3.0, 3.0])
    guide = torch.tensor([True, True, False, True])
    x0 = guided(x, sigma, GuidedConditioning(cond=cond, uncond=uncond, guidance_scale=w, guide=guide))
    assert model.calls == [6]  # 4 cond rows + uncond rows of rows 1 and 3 only
    base = x / 2
    cond_only = base + torch.arange(1.0, 5.0).view(-1, 1, 1, 1)
    assert torch.allclose(x0[[0, 2]], cond_only[[0, 2]], atol=1e-6)
    assert torch.allclose(x0[1], base[1] - 1 + 3 * 3, atol=1e-6)
    assert torch.allclose(x0[3], base[3] - 1 + 3 * 5, atol=1e-6)


def test_no_guided_rows_means_cond_rows_only() -> None:
    model = CountingDenoiser()
    x = torch.randn(2, 4, 2, 2)
    cond, uncond = _conds(2)
    cfg(model)(x, torch.ones(2, dtype=torch.float64), GuidedConditioning(cond, uncond, torch.ones(2)))
    cfg(model)(x, torch.ones(2, dtype=torch.float64), GuidedConditioning(cond, None, torch.full((2,), 5.0)))
    assert model.calls == [2, 2]


def test_guidance_interval_helpers() -> None:
    sigma = torch.tensor([14.6, 5.0, 1.0, 0.2], dtype=torch.float64)
    assert in_guidance_interval(sigma, 0.28, 5.42).tolist() == [False, True, True, False]
    assert guided_steps(5, unguided_last_steps=2) == [True, True, True, False, False]
    assert guided_steps(3) == [True, True, True]


def test_classifier_guidance_moves_x0_by_w_sigma2_grad_log_p() -> None:
    # logits linear in x: log p(y | x) = a_y . x - logsumexp; the gradient is a_y - E_p[a]
    torch.manual_seed(0)
    weights = torch.randn(3, 4 * 2 * 2)  # 3 classes

    def classifier(x: Tensor, sigma: Tensor) -> Tensor:
        return x.flatten(1) @ weights.T  # (B, 3)

    base = cfg(CountingDenoiser())
    guided = classifier_guidance(base, classifier)
    x = torch.randn(2, 4, 2, 2)
    sigma = torch.tensor([2.0, 0.5], dtype=torch.float64)
    cond, uncond = _conds(2)
    labels = torch.tensor([[0], [2]])
    scale = torch.tensor([3.0, 0.0])
    gc = GuidedConditioning(cond, uncond, torch.full((2,), 2.0), classifier_scale=scale, classifier_labels=labels)
    shifted = guided(x, sigma, gc)
    plain = base(x, sigma, gc)
    p = torch.softmax(x.flatten(1) @ weights.T, dim=1)  # (B, 3)
    grad = (weights[labels[:, 0]] - p @ weights).view_as(x)
    expected = plain + (scale * sigma.float() ** 2).view(-1, 1, 1, 1) * grad
    assert torch.allclose(shifted, expected, atol=1e-5)
    assert torch.equal(shifted[1], plain[1])  # scale 0: unchanged
    # the shift increases log p(y | x) to first order: it points along the gradient
    assert float(((shifted[0] - plain[0]) * grad[0]).sum()) > 0


def test_classifier_guidance_sums_log_probs_over_heads() -> None:
    w1, w2 = torch.randn(2, 4), torch.randn(5, 4)

    def classifier(x: Tensor, sigma: Tensor) -> list[Tensor]:
        flat = x.flatten(1)
        return [flat @ w1.T, flat @ w2.T]

    base = cfg(CountingDenoiser())
    guided = classifier_guidance(base, classifier)
    x = torch.randn(1, 4, 1, 1)
    sigma = torch.tensor([1.5], dtype=torch.float64)
    cond, uncond = _conds(1)
    gc = GuidedConditioning(
        cond, uncond, torch.ones(1), classifier_scale=torch.ones(1), classifier_labels=torch.tensor([[1, 3]])
    )
    flat = x.flatten(1)
    grad = (w1[1] - torch.softmax(flat @ w1.T, 1) @ w1) + (w2[3] - torch.softmax(flat @ w2.T, 1) @ w2)
    expected = base(x, sigma, gc) + 1.5**2 * grad.view_as(x)
    assert torch.allclose(guided(x, sigma, gc), expected, atol=1e-5)
