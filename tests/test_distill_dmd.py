"""training/distill_dmd.py's pieces that carry the method: the distribution-matching gradient and
the classifier on the fake score UNet's mid-block features."""

from __future__ import annotations

import torch

from training.distill_dmd import MidFeatureClassifier, MidFeatures, distribution_matching
from training.models import build_unet


def test_matching_gradient_is_the_normalised_score_difference() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 16, 16, generator=gen, requires_grad=True)
    real, fake = torch.randn(3, 4, 16, 16, generator=gen), torch.randn(3, 4, 16, 16, generator=gen)
    loss, grad = distribution_matching(x, real, fake)
    loss.backward()
    norm = (x.detach() - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(grad, (fake - real) / norm)
    assert torch.allclose(x.grad, grad / x.numel(), atol=1e-9)
    # gradient descent moves x along (teacher's x0 - fake score's x0)
    assert (-x.grad * (real - fake)).sum() > 0


def test_matching_gradient_vanishes_when_the_scores_agree() -> None:
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    real = torch.randn(2, 4, 16, 16)
    loss, grad = distribution_matching(x, real, real.clone())
    loss.backward()
    assert grad.abs().max() == 0 and x.grad.abs().max() == 0


def test_classifier_reads_the_fake_unets_mid_block() -> None:
    unet = build_unet().eval()
    mid, classifier = MidFeatures(unet), MidFeatureClassifier()
    text = torch.randn(2, 77, 128)
    with torch.no_grad():
        unet(torch.randn(2, 4, 16, 16), torch.tensor([10, 900]), encoder_hidden_states=text)
    feature = mid.take()
    assert feature.shape[:2] == (2, 160)
    assert classifier(feature).shape == (2,)
    try:
        mid.take()
    except RuntimeError:
        pass
    else:
        raise AssertionError("take() twice without a forward must fail")
