"""End to end on tiny random models: text_to_image against the diffusers pipelines as oracles."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    LatentConsistencyModelPipeline,
    LCMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from transformers import CLIPTokenizer

from pipelines.text import write_hf_clip_tokenizer_files
from pipelines.text_to_image import text_to_image
from pipelines.tiny import (
    LCM_SCHEDULER_CONFIG,
    SD_SCHEDULER_CONFIG,
    tiny_lcm,
    tiny_sd1,
    tiny_sd2,
    tiny_sdxl,
)

PROMPT = "a small red circle left of a blue square"
STEPS = 3
SIZE = 32  # pixels; divisible by 8 as diffusers' check requires


@pytest.fixture(scope="module")
def hf_tokenizer_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    vocab, merges = write_hf_clip_tokenizer_files(tmp_path_factory.mktemp("clip_tokenizer"))
    return str(vocab), str(merges)


@pytest.fixture(scope="module")
def sd1():
    return tiny_sd1(seed=0, controlnet=True)


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl(seed=0)


def _ddim() -> DDIMScheduler:
    config = {k: v for k, v in SD_SCHEDULER_CONFIG.items() if not k.startswith("_")}
    return DDIMScheduler(**config)


def _initial_noise(model, seed: int, n: int = 1) -> torch.Tensor:
    f = model.family.latent_factor
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((n, 4, SIZE // f, SIZE // f), generator=generator)


@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_sd1_matches_diffusers_pipeline(sd1, hf_tokenizer_files, guidance: float) -> None:
    vocab, merges = hf_tokenizer_files
    pipe = StableDiffusionPipeline(
        vae=sd1.vae.vae,
        text_encoder=sd1.text_encoder.model,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),  # pads with <|endoftext|> = 49407, as SD1's
        unet=sd1.denoiser.unet,
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        PROMPT,
        negative_prompt="blurry",
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        height=SIZE,
        width=SIZE,
        latents=_initial_noise(sd1, seed=3),
        output_type="pt",
    ).images
    images, meta = text_to_image(
        sd1, PROMPT, negative_prompt="blurry", sampler="ddim", steps=STEPS, guidance=guidance,
        seed=3, width=SIZE, height=SIZE,
    )
    assert images.shape == expected.shape == (1, 3, SIZE, SIZE)
    assert float(images.std()) > 0.01  # a non-constant image: the comparison means something
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3
    assert meta["model_evaluations"] == STEPS
    assert meta["uncond_rows"] == (STEPS if guidance > 1 else 0)


def test_sdxl_matches_diffusers_pipeline(sdxl, hf_tokenizer_files) -> None:
    vocab, merges = hf_tokenizer_files
    pipe = StableDiffusionXLPipeline(
        vae=sdxl.vae.vae,
        text_encoder=sdxl.text_encoder.model,
        text_encoder_2=sdxl.text_encoder.model_2,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        tokenizer_2=CLIPTokenizer(vocab, merges, pad_token="!", model_max_length=77),  # SDXL's second tokenizer pads with 0
        unet=sdxl.denoiser.unet,
        scheduler=_ddim(),
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        PROMPT,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        height=SIZE,
        width=SIZE,
        latents=_initial_noise(sdxl, seed=5),
        output_type="pt",
    ).images
    # no negative prompt: diffusers zeroes the uncond embeddings (force_zeros_for_empty_prompt)
    images, _ = text_to_image(sdxl, PROMPT, sampler="ddim", steps=STEPS, guidance=5.0, seed=5, width=SIZE, height=SIZE)
    assert float(images.std()) > 0.01
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3


def test_seeds_determine_images(sd1) -> None:
    a, _ = text_to_image(sd1, PROMPT, steps=2, seed=1, width=SIZE, height=SIZE, num_images=2)
    b, meta = text_to_image(sd1, PROMPT, steps=2, seed=1, width=SIZE, height=SIZE, num_images=2)
    c, _ = text_to_image(sd1, PROMPT, steps=2, seed=2, width=SIZE, height=SIZE)
    assert a.shape == (2, 3, SIZE, SIZE) and meta["num_images"] == 2
    assert torch.equal(a, b)
    assert (a[0] - a[1]).abs().max().item() > 1e-3  # each image its own noise
    assert (a[0] - c[0]).abs().max().item() > 1e-3


def test_controlnet_scale_changes_image_and_zero_scale_is_plain(sd1) -> None:
    control = torch.zeros(3, SIZE, SIZE)
    control[:, 8:24, 8:24] = 1.0
    run = {"steps": 2, "seed": 4, "width": SIZE, "height": SIZE}
    plain, _ = text_to_image(sd1, PROMPT, **run)
    zero, _ = text_to_image(sd1, PROMPT, **run, control_image=control, control_scale=0.0)
    full, _ = text_to_image(sd1, PROMPT, **run, control_image=control, control_scale=1.0)
    assert (zero - plain).abs().max().item() <= 1e-5
    assert (full - plain).abs().max().item() > 1e-3


def test_img2img_matches_diffusers_img2img_pipeline(sd1, hf_tokenizer_files) -> None:
    vocab, merges = hf_tokenizer_files
    pipe = StableDiffusionImg2ImgPipeline(
        vae=sd1.vae.vae,
        text_encoder=sd1.text_encoder.model,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        unet=sd1.denoiser.unet,
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    init = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    expected = pipe(
        PROMPT,
        image=init * 2 - 1,  # diffusers takes tensors in [-1, 1]
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=6.0,
        generator=torch.Generator("cpu").manual_seed(9),
        output_type="pt",
    ).images
    images, meta = text_to_image(sd1, PROMPT, steps=4, guidance=6.0, seed=9, init_image=init, strength=0.5)
    assert meta["model_evaluations"] == 2  # 4 steps x strength 0.5
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"sampler": "nope"}, "sampler"),
        ({"steps": 0}, "steps"),
        ({"guidance": math.nan}, "guidance"),
        ({"guidance": math.inf}, "guidance"),
        ({"width": 33}, "width"),
        ({"height": 30 + 1}, "height"),
        ({"width": 4096}, "width"),
        ({"seed": -1}, "seed"),
        ({"num_images": 0}, "num_images"),
        ({"strength": 0.5}, "strength"),
        ({"init_image": torch.rand(3, 16, 16), "width": 32}, "init_image"),
        ({"control_scale": math.nan}, "control_scale"),
    ],
)
def test_bad_input_names_the_parameter(sd1, kwargs: dict, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        text_to_image(sd1, PROMPT, **kwargs)


def test_control_image_without_controlnet_is_refused(sdxl) -> None:
    with pytest.raises(ValueError, match="control_image"):
        text_to_image(sdxl, PROMPT, control_image=torch.rand(3, SIZE, SIZE))


@pytest.mark.parametrize("suffix", [".png", ".webp", ".jpg"])
def test_generate_command_writes_the_image(tmp_path, suffix: str) -> None:
    from PIL import Image

    from server.cli import main

    out = tmp_path / f"image{suffix}"
    rc = main(["generate", "a red circle", "--model", "tiny-sd1", "--steps", "1", "--width", "48", "--height", "32", "-o", str(out)])
    assert rc == 0
    with Image.open(out) as image:
        assert image.size == (48, 32) and image.mode == "RGB"


def test_generate_command_rejects_bad_input_with_exit_2(tmp_path, capsys) -> None:
    from server.cli import main

    assert main(["generate", "x", "--model", "tiny-sd1", "--width", "33", "-o", str(tmp_path / "a.png")]) == 2
    assert "width" in capsys.readouterr().err
    assert main(["generate", "x", "--model", "tiny-sd1", "-o", str(tmp_path / "a.gif")]) == 2


def test_save_image_is_lossless_for_png(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from server.commands.generate import save_image

    image = torch.rand(3, 8, 6, generator=torch.Generator().manual_seed(0))
    path = save_image(image[None], tmp_path / "x.png")
    with Image.open(path) as loaded:
        back = torch.from_numpy(np.array(loaded)).permute(2, 0, 1).float() / 255
    assert (back - image).abs().max().item() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="output"):
        save_image(image, tmp_path / "x.bmp")


def test_one_step_turbo_matches_diffusers_euler_ancestral_trailing(sd1, hf_tokenizer_files) -> None:
    # SD-Turbo's recipe: EulerAncestral with trailing spacing, one step at t = 999, no guidance
    vocab, merges = hf_tokenizer_files
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset", "prediction_type")
    config = {k: SD_SCHEDULER_CONFIG[k] for k in keep}
    config["timestep_spacing"] = "trailing"
    pipe = StableDiffusionPipeline(
        vae=sd1.vae.vae,
        text_encoder=sd1.text_encoder.model,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        unet=sd1.denoiser.unet,
        scheduler=EulerAncestralDiscreteScheduler(**config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    # diffusers' Euler starts trailing schedules at x = noise * sigma_max, not the VP prior's
    # noise * sqrt(sigma_max^2 + 1) (0.2% apart at t = 999); hand it our starting point
    sigma_max = float(sd1.denoiser.sigmas(1, "trailing")[0])
    latents = _initial_noise(sd1, seed=8) * (sigma_max**2 + 1) ** 0.5 / sigma_max
    expected = pipe(
        PROMPT, num_inference_steps=1, guidance_scale=0.0, height=SIZE, width=SIZE,
        latents=latents, output_type="pt",
    ).images
    images, meta = text_to_image(sd1, PROMPT, sampler="onestep", steps=1, guidance=0.0, seed=8, width=SIZE, height=SIZE)
    assert meta["model_evaluations"] == 1 and meta["uncond_rows"] == 0
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3


def test_lcm_matches_diffusers_latent_consistency_pipeline(hf_tokenizer_files) -> None:
    vocab, merges = hf_tokenizer_files
    lcm = tiny_lcm(seed=0)
    config = {k: v for k, v in LCM_SCHEDULER_CONFIG.items() if not k.startswith("_")}
    config.pop("clip_sample")
    pipe = LatentConsistencyModelPipeline(
        vae=lcm.vae.vae,
        text_encoder=lcm.text_encoder.model,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        unet=lcm.denoiser.unet,
        scheduler=LCMScheduler(**config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(6)
    latents = torch.randn((1, 4, SIZE // 2, SIZE // 2), generator=generator)  # then the re-noise draws
    expected = pipe(
        PROMPT, num_inference_steps=4, guidance_scale=6.0, height=SIZE, width=SIZE,
        latents=latents, generator=generator, output_type="pt",
    ).images
    # the request's guidance becomes the UNet's w embedding, as in diffusers; no uncond pass
    images, meta = text_to_image(lcm, PROMPT, sampler="lcm", steps=4, guidance=6.0, seed=6, width=SIZE, height=SIZE)
    assert meta["model_evaluations"] == 4 and meta["uncond_rows"] == 0
    assert float(images.std()) > 0.01
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3


def test_controlnet_matches_diffusers_controlnet_pipeline(sd1, hf_tokenizer_files) -> None:
    vocab, merges = hf_tokenizer_files
    controlnet = sd1.controlnets["tiny-control"]
    pipe = StableDiffusionControlNetPipeline(
        vae=sd1.vae.vae,
        text_encoder=sd1.text_encoder.model,
        tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        unet=sd1.denoiser.unet,
        controlnet=controlnet,
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    control = torch.zeros(1, 3, SIZE, SIZE)
    control[:, :, 4:20, 10:28] = 1.0
    expected = pipe(
        PROMPT, image=control, controlnet_conditioning_scale=0.7, num_inference_steps=STEPS,
        guidance_scale=7.5, height=SIZE, width=SIZE, latents=_initial_noise(sd1, seed=12), output_type="pt",
    ).images
    images, _ = text_to_image(
        sd1, PROMPT, steps=STEPS, guidance=7.5, seed=12, width=SIZE, height=SIZE,
        control_image=control[0], control_scale=0.7,
    )
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3


def test_guidance_interval_outside_every_step_is_unguided(sd1) -> None:
    run = {"steps": 2, "seed": 5, "width": SIZE, "height": SIZE}
    unguided, _ = text_to_image(sd1, PROMPT, guidance=1.0, **run)
    skipped, meta = text_to_image(sd1, PROMPT, guidance=7.5, guidance_interval=(100.0, 200.0), **run)
    assert meta["uncond_rows"] == 0
    assert torch.equal(skipped, unguided)
    _, meta = text_to_image(sd1, PROMPT, guidance=7.5, guidance_interval=(0.5, 20.0), **run)
    assert meta["uncond_rows"] == 1  # 2 steps: t = 501 (sigma 1.6, guided), t = 1 (sigma 0.04, not)


def test_assemble_refuses_unknown_family_and_missing_components() -> None:
    from pipelines.models import assemble

    with pytest.raises(ValueError, match="family"):
        assemble("sd9", {}, {}, model_id="x", device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="vae"):
        assemble("sd1", {}, {}, model_id="x", device="cpu", dtype=torch.float32)


def test_sd2_v_prediction_with_pad_zero_matches_diffusers_pipeline(hf_tokenizer_files) -> None:
    vocab, merges = hf_tokenizer_files
    sd2 = tiny_sd2(seed=2)
    assert sd2.family.pad_token_id == 0 and sd2.denoiser.prediction_type == "v_prediction"
    scheduler = DDIMScheduler(**{**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if not k.startswith("_")},
                                 "prediction_type": "v_prediction"})
    pipe = StableDiffusionPipeline(
        vae=sd2.vae.vae,
        text_encoder=sd2.text_encoder.model,
        tokenizer=CLIPTokenizer(vocab, merges, pad_token="!", model_max_length=77),  # SD2 pads with 0
        unet=sd2.denoiser.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        PROMPT, num_inference_steps=STEPS, guidance_scale=7.5, height=SIZE, width=SIZE,
        latents=_initial_noise(sd2, seed=13), output_type="pt",
    ).images
    images, _ = text_to_image(sd2, PROMPT, steps=STEPS, guidance=7.5, seed=13, width=SIZE, height=SIZE)
    assert float(images.std()) > 0.01
    assert (images - expected).abs().max().item() <= 1e-4  # measured ~1e-6 (fp32 CPU); the issue asks <= 1e-3


def test_classifier_guidance_option_moves_the_image_only_with_a_scale(sd1) -> None:
    weights = torch.randn(3, 4 * 16 * 16, generator=torch.Generator().manual_seed(0))

    def classifier(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ weights.T  # (B, 3) logits of a linear "noisy classifier"

    run = {"steps": 2, "seed": 3, "width": SIZE, "height": SIZE}
    plain, _ = text_to_image(sd1, PROMPT, **run)
    off, _ = text_to_image(sd1, PROMPT, **run, classifier=classifier, classifier_scale=0.0, classifier_labels=[1])
    on, meta = text_to_image(sd1, PROMPT, **run, classifier=classifier, classifier_scale=20.0, classifier_labels=[1])
    assert torch.equal(off, plain)
    assert (on - plain).abs().max().item() > 1e-3 and meta["classifier_scale"] == 20.0
    with pytest.raises(ValueError, match="classifier_scale"):
        text_to_image(sd1, PROMPT, **run, classifier_scale=1.0)


def test_bfloat16_model_runs_with_float32_latents_and_tracks_float32(sd1) -> None:
    # the dtype plumbing of a half-precision GPU deployment, on CPU: modules in bf16, the
    # sampler's latents and the decoded image in fp32
    from pipelines.models import assemble
    from pipelines.tiny import tiny_controlnet, tiny_sd1_components

    half = assemble(
        "sd1", tiny_sd1_components(0), SD_SCHEDULER_CONFIG, model_id="tiny-bf16", device="cpu",
        dtype=torch.bfloat16, controlnets={"tiny-control": tiny_controlnet(1)},
    )
    half.family = sd1.family
    control = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    run = {"steps": 2, "seed": 1, "width": SIZE, "height": SIZE, "control_image": control, "control_scale": 0.5}
    low, _ = text_to_image(half, PROMPT, **run)
    full, _ = text_to_image(sd1, PROMPT, **run)
    assert low.dtype == torch.float32 and bool(torch.isfinite(low).all())
    assert (low - full).abs().max().item() < 0.1  # bf16 keeps ~3 significant digits
