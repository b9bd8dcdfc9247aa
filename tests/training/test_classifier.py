"""The noisy-latent classifier behind the classifier-guidance interface."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.guidance import classifier_log_prob
from training.classifier import GuidanceClassifier, load_guidance_classifier
from training.data import Caption, ObjectSpec, caption_presence
from training.diffusion import alphas_cumprod
from training.models import NoisyLatentClassifier

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "bundled_classifier" / "classifier.safetensors"


def test_sigma_maps_back_to_its_training_timestep() -> None:
    wrapper = GuidanceClassifier(NoisyLatentClassifier())
    alpha_bar = alphas_cumprod()
    t = torch.tensor([0, 1, 250, 999])
    sigma = ((1 - alpha_bar[t]) / alpha_bar[t]).sqrt()
    assert torch.allclose(wrapper.timesteps(sigma), t.float(), atol=1e-3)


@pytest.mark.skipif(not WEIGHTS.exists(), reason="classifier weights not present")
def test_guidance_gradient_flows_through_the_shipped_classifier() -> None:
    classifier = load_guidance_classifier(WEIGHTS)
    labels = torch.tensor([caption_presence(Caption("a red circle", (ObjectSpec(0, 0, None),)))] * 2)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    log_p = classifier_log_prob(classifier(x, torch.tensor([0.5, 3.0])), labels)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    assert log_p.shape == (2,) and bool((log_p <= 0).all())
    assert float(grad.abs().sum()) > 0 and bool(torch.isfinite(grad).all())
