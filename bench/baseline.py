"""The diffusers pipelines as a user would run them: the baseline every figure is compared with."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.arch import Architecture
from bench.timing import time_call

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"


def make_pipeline(arch: Architecture, tokenizer_dir: Path, *, euler_trailing: bool = False,
                  vae: torch.nn.Module | None = None) -> object:
    """StableDiffusion(XL)Pipeline over the given modules: DDIM, or Euler with trailing spacing (Turbo);
    `vae` in place of the architecture's (an AutoencoderTiny, as diffusers' docs swap in TAESD)."""
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTokenizer

    sched_cfg = dict(arch.config["scheduler"])
    if euler_trailing:
        sched_cfg["timestep_spacing"] = "trailing"
        for key in ("set_alpha_to_one", "clip_sample"):
            sched_cfg.pop(key, None)
        scheduler = EulerDiscreteScheduler(**sched_cfg)
    else:
        scheduler = DDIMScheduler(**sched_cfg)
    tokenizer = CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77)
    if arch.text_encoder_2 is not None:
        tokenizer_2 = CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77, pad_token="!")
        pipe = StableDiffusionXLPipeline(
            vae=vae if vae is not None else arch.vae, text_encoder=arch.text_encoder, text_encoder_2=arch.text_encoder_2,
            tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=arch.unet, scheduler=scheduler,
        )
    else:
        if arch.config["tokenizer"]["pad_token_id"] == 0:
            tokenizer = CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77, pad_token="!")
        pipe = StableDiffusionPipeline(
            vae=vae if vae is not None else arch.vae, text_encoder=arch.text_encoder, tokenizer=tokenizer, unet=arch.unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_pipeline(pipe: object, batch: int, steps: int, guidance: float, side: int, repeats: int = 2,
                  min_seconds: float = 0.0) -> float:
    """Seconds per pipeline call producing `batch` PIL images (median; timing.time_call)."""
    generator = torch.Generator("cpu").manual_seed(0)

    def call() -> object:
        return pipe(  # type: ignore[operator]
            prompt=[PROMPT] * batch, num_inference_steps=steps, guidance_scale=guidance,
            height=side, width=side, generator=generator, output_type="pil",
        )

    return time_call(call, warmup=1, repeats=repeats, min_seconds=min_seconds)
