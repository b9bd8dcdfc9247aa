"""Diagnostic for the ADD student: can the judge-feature discriminator separate real renders from
the shipped one-step student's images when trained alone (student frozen)? CPU, batch 32.

    python training/results/call7/disc_probe.py     # from the repository root; output: disc_probe.txt
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

from training.checkpoint import load_weights
from training.data import render, sample_scenes, scenes_to_batch, tokenize
from training.distill_add import JudgeDiscriminator, add_generate, judge_features
from training.models import Judge

STEPS, BATCH = 150, 32


def main() -> None:
    torch.manual_seed(0)
    device = torch.device("cpu")
    text_encoder = CLIPTextModel.from_pretrained("weights/bundled/text_encoder").float().eval()
    vae = AutoencoderKL.from_pretrained("weights/bundled/vae").float().eval()
    student = UNet2DConditionModel.from_pretrained("weights/bundled_turbo/unet").float().eval()
    judge = Judge()
    load_weights(judge, Path("weights/judge/judge.safetensors"))
    judge.eval().requires_grad_(False)
    disc = JudgeDiscriminator().train()
    opt = torch.optim.AdamW(disc.parameters(), lr=2e-4, betas=(0.0, 0.99), weight_decay=0.0)  # as distill_add
    gen = torch.Generator().manual_seed(0)
    start = time.time()
    for step in range(1, STEPS + 1):
        scenes = sample_scenes(1000 + step, BATCH, "train")
        texts = [s.caption.text for s in scenes]
        with torch.no_grad():
            real = render(scenes_to_batch(scenes), gen)
            fake = add_generate(student, text_encoder, vae, vae.config.scaling_factor, texts, step, device)
            pooled = text_encoder(tokenize(texts)).pooler_output
            real_features, fake_features = judge_features(judge, real), judge_features(judge, fake)
        d_real, d_fake = disc(real_features, pooled), disc(fake_features, pooled)
        loss = torch.stack([torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(d_real, d_fake)]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 15 == 0:
            accuracy = [((r.mean((1, 2)) > 0).float().mean().item() + (f.mean((1, 2)) < 0).float().mean().item()) / 2
                        for r, f in zip(d_real, d_fake)]
            print(f"step {step} hinge {loss.item():.3f} per-head acc {[round(a, 2) for a in accuracy]} "
                  f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
