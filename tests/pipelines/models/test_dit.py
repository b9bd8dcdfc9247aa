"""DiT wrapper on a tiny random DiTTransformer2DModel: class labels, learned-sigma output halves."""

from __future__ import annotations

import pytest
import torch

from pipelines.conditioning import Conditioning
from pipelines.text_to_image import text_to_image
from pipelines.tiny import tiny_dit


@pytest.fixture(scope="module")
def dit():
    return tiny_dit(seed=0)


def test_x0_uses_the_first_half_of_the_learned_sigma_channels(dit) -> None:
    denoiser = dit.denoiser
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    sigma = torch.tensor([2.0, 0.7], dtype=torch.float64)
    labels = torch.tensor([3, denoiser.null_class])
    x0 = denoiser(x, sigma, Conditioning(class_labels=labels))

    c_in = (1 / (sigma**2 + 1).sqrt()).float().view(-1, 1, 1, 1)
    t = denoiser.timesteps(sigma).float()
    with torch.no_grad():
        out = denoiser.transformer(c_in * x, timestep=t, class_labels=labels).sample
    assert out.shape == (2, 8, 8, 8)  # eps and the variance interpolation
    expected = x - sigma.float().view(-1, 1, 1, 1) * out[:, :4]
    assert torch.allclose(x0, expected, atol=1e-5)
    wrong = x - sigma.float().view(-1, 1, 1, 1) * out[:, 4:]
    assert (x0 - wrong).abs().max().item() > 1e-2


def test_class_labels_change_the_output_and_are_required(dit) -> None:
    x = torch.randn(1, 4, 8, 8)
    sigma = torch.ones(1, dtype=torch.float64)
    a = dit.denoiser(x, sigma, Conditioning(class_labels=torch.tensor([1])))
    b = dit.denoiser(x, sigma, Conditioning(class_labels=torch.tensor([2])))
    assert (a - b).abs().max().item() > 1e-4
    with pytest.raises(ValueError, match="class_labels"):
        dit.denoiser(x, sigma, Conditioning(text_embeddings=torch.zeros(1, 1, 1)))


def test_text_to_image_reads_a_class_id_and_guides_with_the_null_class(dit) -> None:
    images, meta = text_to_image(dit, "7", steps=2, guidance=4.0)
    assert images.shape == (1, 3, 16, 16)
    assert meta["uncond_rows"] == 2
    with pytest.raises(ValueError, match="prompt"):
        text_to_image(dit, "a cat")
    with pytest.raises(ValueError, match="prompt"):
        text_to_image(dit, "10")  # 10 classes: ids 0..9, 10 is the null class


def test_text_to_image_matches_diffusers_dit_pipeline() -> None:
    from diffusers import DDIMScheduler, DiTPipeline

    dit = tiny_dit(seed=1, num_classes=1000)  # DiTPipeline's null class is the literal 1000
    pipe = DiTPipeline(
        transformer=dit.denoiser.transformer,
        vae=dit.vae.vae,
        scheduler=DDIMScheduler(
            beta_schedule="linear", beta_start=0.0001, beta_end=0.02, timestep_spacing="leading",
            steps_offset=0, set_alpha_to_one=True, clip_sample=False,
        ),
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        class_labels=[207], guidance_scale=4.0, num_inference_steps=3,
        generator=torch.Generator("cpu").manual_seed(3), output_type="pt",
    ).images
    images, _ = text_to_image(dit, "207", sampler="ddim", steps=3, guidance=4.0, seed=3)
    assert float(images.std()) > 0.01
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3
