"""KL autoencoder recipe: 64 px scenes <-> 4 x 16 x 16 latents (Rombach et al. 2022, sec. 3.1).

Loss: L1 + MSE reconstruction plus a small KL term (weight 1e-6) toward N(0, I), no
adversarial or perceptual term: the scenes are flat colours where pixel losses suffice.
Reports reconstruction PSNR on held-out renders.

    python -m training.autoencoder --out DIR --seconds S [--device cuda]
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from training.checkpoint import (
    Deadline,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_main,
)
from training.data import render, sample_scenes, scenes_to_batch
from training.models import build_vae

STAGE = "autoencoder"
KL_WEIGHT = 1e-6


@torch.no_grad()
def psnr(vae: AutoencoderKL, seed: int, count: int, device: torch.device) -> float:
    """Mean reconstruction PSNR (dB, images in [0, 1]) on held-out-split renders, posterior mode."""
    scenes = sample_scenes(seed, count, "heldout")
    images = render(scenes_to_batch(scenes).to(device), torch.Generator(device=device).manual_seed(seed))
    values = []
    for chunk in images.split(256):
        recon = vae.decode(vae.encode(chunk * 2 - 1).latent_dist.mode()).sample.clamp(-1, 1) * 0.5 + 0.5
        mse = ((recon - chunk) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
        values.extend((-10 * torch.log10(mse)).tolist())
    return sum(values) / len(values)


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 1e-3) -> dict[str, float]:
    """Train (or resume) the autoencoder for `seconds` of wall clock; returns held-out PSNR."""
    deadline = Deadline(seconds)
    batch = batch or (128 if device.type == "cuda" else 8)
    directory = out / STAGE
    vae = build_vae().to(device)
    load_weights(vae, directory / "vae.safetensors")
    state = load_state(directory)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    if (directory / "optimizer.pt").exists():
        opt.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device))
    gen = torch.Generator(device=device).manual_seed(2000 + state.step)
    pool = scenes_to_batch(sample_scenes(3, 50_000 if device.type == "cuda" else 2_000, "all")).to(device)
    eval_reserve = 10.0 if device.type == "cuda" else 0.2 * seconds
    start_step = state.step
    while deadline.left() > eval_reserve:
        rows = torch.randint(0, pool.shape.shape[0], (batch,), generator=gen, device=device)
        images = render(pool.index(rows), gen) * 2 - 1
        # cosine decay to lr/10 over the stage's expected remaining time
        frac = min(1.0, deadline.elapsed() / max(1.0, seconds - eval_reserve))
        for group in opt.param_groups:
            group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            posterior = vae.encode(images).latent_dist
            recon = vae.decode(posterior.sample()).sample
        recon = recon.float()
        rec = F.l1_loss(recon, images) + F.mse_loss(recon, images)
        kl = posterior.kl().mean() / images[0].numel()
        loss = rec + KL_WEIGHT * kl
        clipped_step(opt, loss, vae.parameters())
        state.step += 1
        if state.step % 10 == 0:
            state.log("reconstruction", rec.item())
    vae.eval()
    value = psnr(vae, seed=11, count=1024 if device.type == "cuda" else 32, device=device)
    state.metrics["heldout_psnr_db"] = value
    state.metrics["steps_this_run"] = state.step - start_step
    state.elapsed_s += deadline.elapsed()
    save_weights(vae, directory / "vae.safetensors")
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    save_state(directory, state, "autoencoder: L1 + MSE reconstruction")
    return {"psnr_db": value}


def main() -> None:
    stage_main(__doc__.splitlines()[0], STAGE, train)


if __name__ == "__main__":
    main()
