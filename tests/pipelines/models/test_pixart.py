"""PixArt wrapper on a tiny PixArtTransformer2DModel and tiny T5 encoder (a word-level tokenizer; no hub)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from pipelines.conditioning import Conditioning
from pipelines.models import assemble
from pipelines.text_to_image import text_to_image

SCHEDULER: dict[str, object] = {
    "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "timestep_spacing": "leading",
    "steps_offset": 0, "set_alpha_to_one": True, "prediction_type": "epsilon", "clip_sample": False,
}
WORDS = ["<pad>", "</s>", "<unk>", "a", "red", "circle", "blue", "square", "left", "of"]


def tiny_t5_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level stand-in for T5's sentencepiece tokenizer: pad 0, EOS 1 appended, as T5 does."""
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def pixart():
    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    t5 = T5EncoderModel(T5Config(vocab_size=len(WORDS), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    scheduler = SCHEDULER
    model = assemble(
        "pixart",
        {"transformer": transformer, "vae": vae, "text_encoder": t5, "tokenizer": tiny_t5_tokenizer()},
        scheduler,
        model_id="tiny-pixart",
        device="cpu",
        dtype=torch.float32,
    )
    model.family = replace(model.family, min_side=8, default_width=16, default_height=16, max_tokens=8)
    model.text_encoder.max_tokens = 8
    return model


def test_t5_encoder_masks_padding_and_reports_truncation(pixart) -> None:
    cond, truncated = pixart.text_encoder.encode(["a red circle", "a red circle left of a blue square"])
    assert cond.text_embeddings.shape == (2, 8, 32)
    assert cond.text_mask.tolist()[0] == [1, 1, 1, 1, 0, 0, 0, 0]  # 3 words + EOS
    assert truncated == [False, True]  # 8 words + EOS > 8 tokens


def test_x0_uses_first_half_of_learned_sigma_and_the_mask(pixart) -> None:
    cond, _ = pixart.text_encoder.encode(["a red circle"])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    sigma = torch.tensor([1.5], dtype=torch.float64)
    x0 = pixart.denoiser(x, sigma, cond)
    denoiser = pixart.denoiser
    with torch.no_grad():
        out = denoiser.transformer(
            x / (1 + 1.5**2) ** 0.5,
            encoder_hidden_states=cond.text_embeddings,
            encoder_attention_mask=cond.text_mask,
            timestep=denoiser.timesteps(sigma).float(),
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
    assert out.shape == (1, 8, 8, 8)
    assert torch.allclose(x0, x - 1.5 * out[:, :4], atol=1e-5)
    unmasked = pixart.denoiser(x, sigma, Conditioning(text_embeddings=cond.text_embeddings))
    assert (unmasked - x0).abs().max().item() > 1e-5  # the mask is used


def test_text_to_image_runs_on_pixart(pixart) -> None:
    images, meta = text_to_image(pixart, "a blue square", steps=2, guidance=4.5, sampler="dpmpp_2m")
    assert images.shape == (1, 3, 16, 16) and meta["uncond_rows"] == 2
    assert bool(torch.isfinite(images).all())


def test_text_to_image_matches_diffusers_pixart_alpha_pipeline(pixart) -> None:
    pipe = PixArtAlphaPipeline(
        tokenizer=tiny_t5_tokenizer(),
        text_encoder=pixart.text_encoder.model,
        vae=pixart.vae.vae,
        transformer=pixart.denoiser.transformer,
        scheduler=DDIMScheduler(**SCHEDULER),
    )
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    expected = pipe(
        "A red circle left of a blue square",  # 8 words + EOS: truncated to 8 tokens both ways
        negative_prompt="",
        num_inference_steps=3,
        guidance_scale=4.5,
        height=16,
        width=16,
        latents=noise,
        output_type="pt",
        use_resolution_binning=False,
        clean_caption=False,
        max_sequence_length=8,
    ).images
    images, meta = text_to_image(
        pixart, "A red circle left of a blue square", sampler="ddim", steps=3, guidance=4.5, seed=4
    )
    assert meta["prompt_truncated"] is True
    assert float(images.std()) > 0.01
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3
