"""Distil a tiny autoencoder (diffusers' AutoencoderTiny, the TAESD layout) onto the bundled
model's scaled latents: a fast decoder for fast mode (pipelines.vae.TinyAutoencoder), and an
encoder so the folder is a complete autoencoder (img2img can use it).

Notation: x a render in [0, 1]; s the KL autoencoder's scaling factor (config.json, 0.2659 for
weights/bundled/vae; shift 0); q(z | x) its posterior; z = s * (sample of q(z | x)) the scaled
latent the UNet works in. D_kl, D_tiny, E_tiny: the KL decoder and the tiny decoder / encoder.

The student is TAESD (madebyollin/taesd) with one stage fewer, as this VAE downsamples 4x, not
8x: 64 channels throughout, (1, 3, 3) encoder and (3, 3, 1) decoder blocks, ReLU, nearest
upsampling; its own scaling factor is 1 since it reads the scaled latents z directly.

Decoder loss: training.vae_decoder.reconstruction_loss(D_tiny(z), 2x - 1) (L1 + MSE + L1 on
image gradients, on [-1, 1] images as that function is written) with z a posterior sample, as
the UNet's latents are never exact. No distillation term toward D_kl(z): the KL decoder gives
back the renders at ~42 dB PSNR, so D_kl(z) and x are the same target up to < 1% RMS, and the
renders are the ground truth without a KL decode per step.
Encoder loss: MSE(E_tiny(2x - 1), s * mean of q(z | x)), on every ENCODER_EVERY-th batch only,
as the decoder is the lever and the encoder's regression is the easier task.

Training data: a pool of renders with their scaled posterior (mean, std), computed once per run
(on CPU a render plus a KL encode costs about as much as a decoder step); each step draws a fresh
posterior sample z = mean + std * eps, as pipelines.vae.KLAutoencoder.encode does.
Reports held-out PSNR of D_tiny and D_kl on the same latents, and the judge's accuracy on the
renders and on both decoders' reconstructions (training.vae_decoder.judged_ceiling's scenes).

Train it on a GPU: 5,589 steps at batch 256 in 118 s on an H200 reach 38.2 dB and the judge reads
0.955 of its reconstructions (KL decoder 0.919; call 24, the shipped weights). Two shared CPU cores
make under one step of batch 8 a second: 1,005 steps in 40 min reached 29.3 dB, judged 0.33.

    python -m training.tiny_decoder --out RUN --seconds S [--device cpu|cuda] [--export DIR]

RUN/tiny_vae/ holds the fp32 training weights, optimizer and state (it resumes from them);
`--export DIR` writes the fp16 diffusers AutoencoderTiny folder to DIR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderTiny
from torch import Tensor

from pipelines.vae import KLAutoencoder, TinyAutoencoder
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
from training.models import Judge
from training.vae_decoder import reconstruction_loss

STAGE = "tiny_vae"
TINY_VAE_CONFIG: dict[str, object] = {
    "encoder_block_out_channels": (64, 64, 64),
    "decoder_block_out_channels": (64, 64, 64),
    "num_encoder_blocks": (1, 3, 3),
    "num_decoder_blocks": (3, 3, 1),
    "latent_channels": 4,
    "act_fn": "relu",
    "upsample_fn": "nearest",
    "upsampling_scaling_factor": 2,
    "scaling_factor": 1.0,  # it reads the KL autoencoder's scaled latents as they are
}
ENCODER_EVERY = 3
POOL_SEED = 5  # training.vae_decoder's scene pool
PSNR_SEED = 11  # training.autoencoder.psnr's held-out renders
JUDGED_SEED = 12345  # training.vae_decoder.judged_ceiling's seen-split renders
DEFAULT_VAE = Path("weights/bundled/vae")
DEFAULT_JUDGE = Path("weights/judge/judge.safetensors")


def build_tiny_vae() -> AutoencoderTiny:
    """The student, randomly initialised: (B, 3, 64, 64) <-> (B, 4, 16, 16)."""
    return AutoencoderTiny(**TINY_VAE_CONFIG)  # type: ignore[arg-type]


def load_teacher(path: Path, device: torch.device) -> KLAutoencoder:
    """The bundled KL autoencoder, frozen, in fp32."""
    vae = AutoencoderKL.from_pretrained(path).float().to(device).requires_grad_(False)
    return KLAutoencoder(vae, upcast=False)


def load_judge(path: Path, device: torch.device) -> Judge | None:
    """The judge from its safetensors file, or None (with a note) when the file is absent."""
    judge = Judge().to(device).eval()
    if load_weights(judge, path):
        return judge
    print(f"[{STAGE}] no judge at {path}: judged accuracy skipped", flush=True)
    return None


@torch.no_grad()
def posterior(teacher: KLAutoencoder, images: Tensor, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Scaled mean and std of q(z | x) for images (B, 3, H, W) in [0, 1]: each (B, 4, H/f, W/f)."""
    means, stds = [], []
    for part in images.split(chunk):
        dist = teacher.vae.encode(part * 2 - 1).latent_dist
        means.append((dist.mean - teacher.shift_factor) * teacher.scaling_factor)
        stds.append(dist.std * teacher.scaling_factor)
    return torch.cat(means), torch.cat(stds)


def psnr_db(images: Tensor, targets: Tensor) -> float:
    """Mean over images of 10 log10(1 / MSE) (dB), both (B, 3, H, W) in [0, 1]."""
    mse = ((images.float() - targets.float()) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return float((-10 * torch.log10(mse)).mean())


def decode_all(decode: Callable[[Tensor], Tensor], latents: Tensor, chunk: int = 256) -> Tensor:
    """Images in [0, 1] for scaled latents (B, 4, h, w), decoded `chunk` at a time."""
    return torch.cat([decode(part) for part in latents.split(chunk)])


@torch.no_grad()
def evaluate(
    tiny: TinyAutoencoder,
    teacher: KLAutoencoder,
    judge: Judge | None,
    count: int,
    device: torch.device,
) -> dict[str, float]:
    """Held-out PSNR of both decoders on the same posterior-mean latents (and of the tiny
    encoder -> tiny decoder round trip), the tiny encoder's latent RMSE, and the judge's
    whole-caption and per-attribute accuracy on renders and on both decoders' reconstructions."""
    scenes = sample_scenes(PSNR_SEED, count, "heldout")
    gen = torch.Generator(device=device).manual_seed(PSNR_SEED)
    images = render(scenes_to_batch(scenes).to(device), gen)
    latents, _ = posterior(teacher, images)
    tiny_latents = torch.cat([tiny.encode(part) for part in images.split(256)])
    metrics = {
        "psnr_kl_db": psnr_db(decode_all(teacher.decode, latents), images),
        "psnr_tiny_db": psnr_db(decode_all(tiny.decode, latents), images),
        "psnr_tiny_roundtrip_db": psnr_db(decode_all(tiny.decode, tiny_latents), images),
        "encoder_latent_rmse": float(((tiny_latents - latents) ** 2).mean().sqrt()),
    }
    if judge is not None:
        scenes = sample_scenes(JUDGED_SEED, count, "train")
        gen = torch.Generator(device=device).manual_seed(0)
        images = render(scenes_to_batch(scenes).to(device), gen)
        latents, _ = posterior(teacher, images)
        captions = [s.caption for s in scenes]
        sets = {
            "renders": images,
            "kl": decode_all(teacher.decode, latents),
            "tiny": decode_all(tiny.decode, latents),
        }
        for name, judged in sets.items():
            accuracy, _ = caption_accuracy(judge, judged, captions)
            metrics.update({f"judged_{name}_{key}": value for key, value in accuracy.items()})
    return metrics


def train(
    out: Path,
    seconds: float,
    device: torch.device,
    batch: int | None = None,
    lr: float = 1e-3,
    pool_size: int | None = None,
    vae_path: Path = DEFAULT_VAE,
    judge_path: Path = DEFAULT_JUDGE,
) -> dict[str, float]:
    """Train (or resume) the tiny autoencoder for `seconds` of wall clock; returns its metrics."""
    deadline = Deadline(seconds)
    cuda = device.type == "cuda"
    batch = batch or (256 if cuda else 8)
    directory = out / STAGE
    teacher = load_teacher(vae_path, device)
    student = build_tiny_vae().to(device)
    load_weights(student, directory / "tiny_vae.safetensors")
    state = load_state(directory)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0, fused=cuda)
    if (directory / "optimizer.pt").exists():
        opt.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device))
    judge = load_judge(judge_path, device)

    # the pool: renders (N, 3, 64, 64) in [0, 1] and their scaled posterior (N, 4, 16, 16) twice
    pool_size = pool_size or (16_384 if cuda else 4_096)
    pool_scenes = scenes_to_batch(sample_scenes(POOL_SEED, pool_size, "all")).to(device)
    pool_gen = torch.Generator(device=device).manual_seed(POOL_SEED)
    pool_images = torch.cat(
        [
            render(pool_scenes.index(rows), pool_gen)
            for rows in torch.arange(pool_size, device=device).split(256)
        ]
    )
    pool_mean, pool_std = posterior(teacher, pool_images)
    print(f"[{STAGE}] pool of {pool_size} renders in {deadline.elapsed():.0f} s", flush=True)

    gen = torch.Generator(device=device).manual_seed(6000 + state.step)
    eval_reserve = 30.0  # seconds: the final evaluation takes ~10 s on 2 CPU cores
    start_step, train_start = state.step, deadline.elapsed()
    student.train()
    while deadline.left() > eval_reserve:
        rows = torch.randint(0, pool_size, (batch,), generator=gen, device=device)
        images = pool_images[rows] * 2 - 1
        eps = torch.randn(pool_mean[rows].shape, generator=gen, device=device)
        latents = pool_mean[rows] + pool_std[rows] * eps  # a posterior sample
        frac = min(
            1.0, (deadline.elapsed() - train_start) / max(1.0, seconds - eval_reserve - train_start)
        )
        warm = min(1.0, (state.step - start_step + 1) / 50)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            recon = student.decode(latents, return_dict=False)[0]  # (B, 3, 64, 64) in ~[-1, 1]
        loss = decoder_loss = reconstruction_loss(recon.float(), images)
        train_encoder = state.step % ENCODER_EVERY == 0
        if train_encoder:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                encoded = student.encode(images, return_dict=False)[0]  # (B, 4, 16, 16)
            encoder_loss = F.mse_loss(encoded.float(), pool_mean[rows])
            loss = loss + encoder_loss
        # set_to_none: on decoder-only steps the encoder's grads stay None, so AdamW leaves it alone
        clipped_step(opt, loss, student.parameters())
        state.step += 1
        if state.step % 10 == 0:
            state.log("decoder reconstruction", decoder_loss.item())
        if train_encoder and state.step % (10 * ENCODER_EVERY) == 1:
            state.log("encoder latent mse", encoder_loss.item())
    train_s = deadline.elapsed() - train_start
    student.eval()
    metrics = evaluate(TinyAutoencoder(student), teacher, judge, 1024 if cuda else 256, device)
    state.metrics.update(metrics)
    state.metrics["steps_this_run"] = state.step - start_step
    state.metrics["train_s_this_run"] = round(train_s, 1)
    state.metrics["parameters"] = sum(p.numel() for p in student.parameters())
    state.elapsed_s += deadline.elapsed()
    save_weights(student, directory / "tiny_vae.safetensors")
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    save_state(directory, state, "tiny autoencoder: decoder L1 + MSE + edge L1, encoder MSE")
    return {
        **metrics,
        "steps_this_run": state.step - start_step,
        "train_s_this_run": round(train_s, 1),
    }


def export(out: Path, target: Path) -> None:
    """The trained tiny autoencoder as an fp16 diffusers folder (config.json + safetensors) in target."""
    student = build_tiny_vae()
    if not load_weights(student, out / STAGE / "tiny_vae.safetensors"):
        raise FileNotFoundError(
            f"{out / STAGE / 'tiny_vae.safetensors'} missing: run the stage first"
        )
    student.half().save_pretrained(target, safe_serialization=True)


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: 256 on the GPU, 8 on CPU")
    parser.add_argument(
        "--export", type=Path, default=None, help="write the fp16 AutoencoderTiny folder to EXPORT"
    )
    parser.add_argument(
        "--vae", type=Path, default=DEFAULT_VAE, help="the KL autoencoder's diffusers folder"
    )
    parser.add_argument(
        "--judge", type=Path, default=DEFAULT_JUDGE, help="judge weights (safetensors)"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=None,
        help="renders in the training pool (default: 16384 on the GPU, 4096 on CPU)",
    )
    parser.add_argument(
        "--lr", type=float, default=1e-3, help="peak learning rate (warm-up, then cosine to lr/10)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    metrics = train(
        args.out,
        args.seconds,
        torch.device(args.device),
        batch=args.batch,
        lr=args.lr,
        pool_size=args.pool,
        vae_path=args.vae,
        judge_path=args.judge,
    )
    print(STAGE, metrics, flush=True)
    if args.export is not None:
        export(args.out, args.export)


if __name__ == "__main__":
    main()
