"""Fine-tune the autoencoder's decoder with its encoder frozen: the latent space is kept, so the
trained UNet, its students and the ControlNet stay valid, while the decoder draws shapes better.

Why: the judge reads VAE reconstructions of *real* renders far worse than the renders themselves
(call-4 weights, 256 seen captions: whole caption 0.996 -> 0.656, shape 0.996 -> 0.656, size
1.0 -> 0.642; small crosses come back as diamonds). That caps every generated image's judged
accuracy, whatever the UNet does. The first autoencoder stage had 70 s of training.

Loss: L1 + MSE on pixels, plus L1 on image gradients (finite differences), which weighs the
objects' edges - what tells a cross from a diamond - against the flat background that dominates
plain pixel losses. Decoded from posterior samples, as the UNet's latents are never exact.
Reports held-out PSNR and the judge's accuracy on reconstructions (the autoencoder's ceiling).

    python -m training.vae_decoder --out RUN --seconds S [--device cuda] [--export DIR]

RUN is a training run directory (autoencoder/vae.safetensors, judge/); `--export DIR` writes the
fp16 diffusers VAE folder to DIR/vae with the shipped scaling factor.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor

from training.autoencoder import psnr
from training.checkpoint import (
    Deadline,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_parser,
)
from training.data import render, sample_scenes, scenes_to_batch
from training.judge import caption_accuracy
from training.models import VAE_CONFIG, Judge, build_vae

STAGE = "vae_decoder"
GRADIENT_WEIGHT = 1.0


def _gradients(images: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal and vertical finite differences of (B, C, H, W) images."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """L1 + MSE on pixels plus L1 on image gradients (all on [-1, 1] images)."""
    gx, gy = _gradients(recon)
    tx, ty = _gradients(target)
    edges = F.l1_loss(gx, tx) + F.l1_loss(gy, ty)
    return F.l1_loss(recon, target) + F.mse_loss(recon, target) + GRADIENT_WEIGHT * edges


@torch.no_grad()
def judged_ceiling(vae: AutoencoderKL, judge: Judge, count: int, device: torch.device) -> dict[str, float]:
    """Judge accuracy on posterior-mean reconstructions of seen-split renders (caption seed 12345)."""
    scenes = sample_scenes(12345, count, "train")
    images = render(scenes_to_batch(scenes).to(device), torch.Generator(device=device).manual_seed(0))
    recon = torch.cat([
        vae.decode(vae.encode(chunk * 2 - 1).latent_dist.mean).sample.clamp(-1, 1) * 0.5 + 0.5
        for chunk in images.split(256)
    ])
    accuracy, _ = caption_accuracy(judge, recon.float(), [s.caption for s in scenes])
    return accuracy


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 3e-4) -> dict[str, float]:
    """Fine-tune (or resume) the decoder for `seconds` of wall clock; returns PSNR and judged ceiling."""
    deadline = Deadline(seconds)
    cuda = device.type == "cuda"
    batch = batch or (256 if cuda else 8)
    directory = out / STAGE
    vae = build_vae().to(device)
    if not load_weights(vae, directory / "vae.safetensors") and not load_weights(vae, out / "autoencoder" / "vae.safetensors"):
        raise FileNotFoundError(f"{out / 'autoencoder' / 'vae.safetensors'} missing: train or import the autoencoder first")
    state = load_state(directory)
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=cuda)
    if (directory / "optimizer.pt").exists():
        opt.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device))
    judge = Judge().to(device).eval()
    have_judge = load_weights(judge, out / "judge" / "judge.safetensors")
    count = 512 if cuda else 16
    before = judged_ceiling(vae.eval(), judge, count, device) if have_judge else {}
    gen = torch.Generator(device=device).manual_seed(5000 + state.step)
    pool = scenes_to_batch(sample_scenes(5, 100_000 if cuda else 2_000, "all")).to(device)
    eval_reserve = 20.0 if cuda else 0.3 * seconds
    start_step = state.step
    vae.decoder.train()
    while deadline.left() > eval_reserve:
        rows = torch.randint(0, pool.shape.shape[0], (batch,), generator=gen, device=device)
        images = render(pool.index(rows), gen) * 2 - 1
        frac = min(1.0, deadline.elapsed() / max(1.0, seconds - eval_reserve))
        warm = min(1.0, (state.step - start_step + 1) / 50)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            latents = vae.encode(images).latent_dist.sample(generator=gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            recon = vae.decode(latents.float()).sample
        loss = reconstruction_loss(recon.float(), images)
        clipped_step(opt, loss, params)
        state.step += 1
        if state.step % 10 == 0:
            state.log("reconstruction", loss.item())
    vae.eval()
    metrics = {"psnr_db": psnr(vae, seed=11, count=1024 if cuda else 32, device=device)}
    if have_judge:
        after = judged_ceiling(vae, judge, count, device)
        metrics.update({f"ceiling_before_{k}": v for k, v in before.items()})
        metrics.update({f"ceiling_after_{k}": v for k, v in after.items()})
    state.metrics.update(metrics)
    state.metrics["steps_this_run"] = state.step - start_step
    state.elapsed_s += deadline.elapsed()
    save_weights(vae, directory / "vae.safetensors")
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    save_state(directory, state, "VAE decoder fine-tune: L1 + MSE + edge L1")
    return metrics


def export(out: Path, target: Path, scaling: float) -> None:
    """The fine-tuned VAE as an fp16 diffusers folder target/vae with the shipped scaling factor."""
    vae = AutoencoderKL(**{**VAE_CONFIG, "scaling_factor": scaling})
    if not load_weights(vae, out / STAGE / "vae.safetensors"):
        raise FileNotFoundError(f"{out / STAGE / 'vae.safetensors'} missing: run the stage first")
    vae.half().save_pretrained(target / "vae", safe_serialization=True)


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: 256 on the GPU, 8 on CPU")
    parser.add_argument("--export", type=Path, default=None, help="write the fp16 VAE folder to EXPORT/vae")
    parser.add_argument("--scaling", type=float, default=None, help="VAE scaling factor (default: weights/bundled's)")
    args = parser.parse_args()
    print(STAGE, train(args.out, args.seconds, torch.device(args.device), batch=args.batch), flush=True)
    if args.export is not None:
        scaling = args.scaling or float(AutoencoderKL.load_config("weights/bundled/vae")["scaling_factor"])
        export(args.out, args.export, scaling)


if __name__ == "__main__":
    main()
