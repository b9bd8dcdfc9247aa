"""A sketch ControlNet for the bundled model: object outlines ("strokes") -> image.

Zhang et al. 2023 (ControlNet): a trainable copy of the teacher UNet's encoder and middle block
(diffusers `ControlNetModel.from_unet`, so it starts as the teacher's weights) reads the noisy
latent plus an embedding of the control image and adds zero-initialised residuals to the frozen
UNet's skip connections. The teacher UNet, text encoder and VAE stay frozen; the loss is the
teacher's own eps-prediction MSE with the control image given. Captions are dropped to the empty
prompt for `CAPTION_DROPOUT` of the rows, so the strokes alone must carry the layout and CFG
still has an uncond. Half of the rows draw t by T2I-Adapter's cubic schedule t = (1 - u^3) T
(Mou et al. 2023, sec. 3.4), the other half uniformly: the layout the strokes dictate is fixed in
the high-noise steps, where the uniform schedule spends little. The control image is 64 x 64
but the latent is 16 x 16 (VAE factor 4), so the conditioning embedding downsamples twice: block
channels (32, 64, 128) give two stride-2 convolutions in diffusers' ControlNetConditioningEmbedding.

Training pairs come from `training.sketch`: each scene rendered once (VAE posterior kept in fp16)
with a hand-drawn-looking sketch of its outlines (jittered width, wobble).

    python -m training.controlnet --out RUN --seconds S [--device cuda]
    python -m training.controlnet --out RUN --export DIR      # fp16 diffusers folder for serving

RUN is a training run directory (`python -m training.export --import weights RUN` makes one
from the shipped teacher); the stage writes RUN/controlnet/.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from torch import Tensor

from training.checkpoint import (
    EMA,
    Deadline,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
)
from training.data import render, sample_scenes, scenes_to_batch, tokenize
from training.diffusion import add_noise, alphas_cumprod
from training.sketch import sketch_scenes
from training.text_unet import (
    EMPTY_PROMPT,
    TextUNet,
    encode_latents,
    load_frozen_teacher,
    load_frozen_vae,
)

STAGE = "controlnet"
CAPTION_DROPOUT = 0.2
CONDITIONING_CHANNELS = (32, 64, 128)  # two stride-2 convs: 64 px control -> 16 x 16 latent grid
EMA_DECAY = 0.995  # short runs: an EMA that lags ~200 steps, not ~500
HIGH_NOISE_SHARE = 0.5  # rows whose t is drawn as (1 - u^3) T: the layout is set at high noise
MAX_SHARD = "15MB"


def build_controlnet(unet: UNet2DConditionModel, copy_weights: bool = True) -> ControlNetModel:
    """A ControlNet shaped like `unet`'s encoder, with the 4x-downsampling control embedding."""
    return ControlNetModel.from_unet(
        unet,
        conditioning_embedding_out_channels=CONDITIONING_CHANNELS,
        load_weights_from_unet=copy_weights,
        conditioning_channels=3,
    )


def teacher_scaling(out: Path, vae: AutoencoderKL, device: torch.device) -> float:
    """The teacher's latent scaling factor: text_unet/state.json when the run has it, else this
    stage's cached value, else 1 / std of the VAE's latents of 2048 fixed renders (256 on CPU) (an imported
    run has no teacher state; this estimate is within ~1% of the training-time one)."""
    for stage in ("text_unet", STAGE):
        metrics = load_state(out / stage).metrics
        if "scaling_factor" in metrics:
            return float(metrics["scaling_factor"])  # type: ignore[arg-type]
    count = 2048 if device.type == "cuda" else 256
    gen = torch.Generator(device=device).manual_seed(4)
    probe = scenes_to_batch(sample_scenes(4, count, "train")).to(device)
    latents = torch.cat([encode_latents(vae, render(probe.index(torch.arange(i, i + 256, device=device)), gen), 1.0, gen)
                         for i in range(0, count, 256)])
    return float(1.0 / latents.float().std())


def load_teacher(out: Path, device: torch.device) -> tuple[TextUNet, AutoencoderKL, float]:
    """The frozen teacher (text encoder + UNet, EMA weights), its VAE and latent scaling."""
    teacher = load_frozen_teacher(out, device)
    vae = load_frozen_vae(out, device)
    return teacher, vae, teacher_scaling(out, vae, device)


def load_controlnet(out: Path, teacher: TextUNet, device: torch.device, ema: bool = True) -> ControlNetModel:
    """The stage's ControlNet (EMA weights by default), frozen, on `device`."""
    controlnet = build_controlnet(teacher.unet, copy_weights=False).to(device)
    name = "ema_controlnet" if ema else "controlnet"
    if not load_weights(controlnet, out / STAGE / f"{name}.safetensors"):
        raise FileNotFoundError(f"{out / STAGE / name}.safetensors missing: train the ControlNet first")
    return controlnet.requires_grad_(False).eval()


def controlled_eps(unet: UNet2DConditionModel, controlnet: ControlNetModel, x: Tensor, t: Tensor, text: Tensor,
                   control: Tensor, scale: float = 1.0) -> Tensor:
    """eps of the UNet with the ControlNet's residuals (x (B, 4, 16, 16), control (B, 3, 64, 64) in [0, 1])."""
    down, mid = controlnet(x, t, encoder_hidden_states=text, controlnet_cond=control, conditioning_scale=scale,
                           return_dict=False)
    return unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                mid_block_additional_residual=mid).sample


def _pool(count: int, seed: int, vae: AutoencoderKL, device: torch.device) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """Captions, fp16 latent posterior (mean, std) and uint8 jittered sketches (P, 64, 64) of `count` scenes."""
    scenes = sample_scenes(seed, count, "train")
    batch = scenes_to_batch(scenes).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    means, stds, sketches = [], [], []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for start in range(0, count, 2048):
            rows = torch.arange(start, min(start + 2048, count), device=device)
            drawn = sketch_scenes(batch.index(rows), gen, jitter=True)
            dist = vae.encode(drawn.images * 2 - 1).latent_dist
            means.append(dist.mean.half())
            stds.append(dist.std.half())
            sketches.append((drawn.sketches[:, 0] * 255).round().to(torch.uint8))
    return [s.caption.text for s in scenes], torch.cat(means), torch.cat(stds), torch.cat(sketches)


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 2e-4,
          pool_size: int = 60_000) -> dict[str, float]:
    """Train (or resume) the ControlNet for `seconds` of wall clock; returns its last loss."""
    deadline = Deadline(seconds)
    cuda = device.type == "cuda"
    batch = batch or (256 if cuda else 4)
    directory = out / STAGE
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    teacher, vae, scaling = load_teacher(out, device)
    state = load_state(directory)
    state.metrics["scaling_factor"] = scaling
    controlnet = build_controlnet(teacher.unet).to(device)
    if load_weights(controlnet, directory / "ema_controlnet.safetensors"):
        ema = EMA(controlnet, decay=EMA_DECAY)  # the shadow starts at the saved EMA
        ema.updates = state.step
        load_weights(controlnet, directory / "controlnet.safetensors")
    else:
        ema = EMA(controlnet, decay=EMA_DECAY)
    controlnet.train().requires_grad_(True)
    opt = torch.optim.AdamW(controlnet.parameters(), lr=lr, weight_decay=0.0, fused=cuda)
    if (directory / "optimizer.pt").exists():
        opt.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device))

    texts, latent_mean, latent_std, sketches = _pool(pool_size if cuda else 64, 7000 + state.step, vae, device)
    tokens = tokenize(texts).to(device)
    empty = tokenize([EMPTY_PROMPT]).to(device)
    alpha_bar = alphas_cumprod(device)
    gen = torch.Generator(device=device).manual_seed(8000 + state.step)
    reserve = 5.0 if cuda else 0.1 * seconds  # saving
    start_step = state.step
    running = torch.zeros((), device=device)
    while deadline.left() > reserve:
        rows = torch.randint(0, len(texts), (batch,), generator=gen, device=device)
        noise = torch.randn((batch, 4, 16, 16), generator=gen, device=device)
        latents = (latent_mean[rows].float() + latent_std[rows].float() * noise) * scaling
        drop = torch.rand((batch,), generator=gen, device=device) < CAPTION_DROPOUT
        batch_tokens = torch.where(drop.view(-1, 1), empty.expand(batch, -1), tokens[rows])
        control = (sketches[rows].float() / 255).unsqueeze(1).expand(-1, 3, -1, -1)
        u = torch.rand((batch,), generator=gen, device=device)
        cubic = torch.rand((batch,), generator=gen, device=device) < HIGH_NOISE_SHARE
        t = torch.where(cubic, 1 - u**3, u).mul(1000).long().clamp(max=999)
        eps = torch.randn(latents.shape, generator=gen, device=device)
        x_t = add_noise(latents, eps, t, alpha_bar)
        warm = min(1.0, (state.step - start_step + 1) / 100)
        frac = min(1.0, deadline.elapsed() / max(1.0, seconds - reserve))
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            with torch.no_grad():
                text = teacher.text_encoder(batch_tokens).last_hidden_state
            pred = controlled_eps(teacher.unet, controlnet, x_t, t, text, control)
        loss = ((pred.float() - eps) ** 2).mean()
        clipped_step(opt, loss, controlnet.parameters())
        ema.update(controlnet)
        state.step += 1
        running += loss.detach()
        if state.step % 20 == 0:
            state.log("eps_mse", (running / 20).item())
            running.zero_()
    state.elapsed_s += deadline.elapsed()
    state.metrics["steps_this_run"] = state.step - start_step
    state.metrics["batch"] = batch
    save_weights(controlnet, directory / "controlnet.safetensors")
    ema.copy_to(controlnet)
    save_weights(controlnet, directory / "ema_controlnet.safetensors")
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    save_state(directory, state, "sketch ControlNet: eps MSE (teacher frozen)")
    last = state.losses.get("eps_mse", [(0, float("nan"))])[-1][1]
    return {"steps": float(state.step), "steps_this_run": float(state.step - start_step), "eps_mse": last}


def export_controlnet(out: Path, target: Path) -> int:
    """The EMA ControlNet as an fp16 diffusers folder (config.json + safetensors <= 15 MB); returns bytes."""
    teacher = load_frozen_teacher(out, torch.device("cpu"))
    controlnet = load_controlnet(out, teacher, torch.device("cpu"))
    if target.exists():
        shutil.rmtree(target)
    controlnet.half().save_pretrained(target, max_shard_size=MAX_SHARD, safe_serialization=True)
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the run directory (teacher inside)")
    parser.add_argument("--seconds", type=float, default=None, help="wall-clock training budget")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 256 on GPU, 4 on CPU")
    parser.add_argument("--export", type=Path, default=None, help="write the fp16 serving folder here (no training)")
    args = parser.parse_args()
    if args.export is not None:
        print(STAGE, {"exported_bytes": export_controlnet(args.out, args.export)}, flush=True)
        return
    if args.seconds is None:
        parser.error("--seconds is required to train")
    print(STAGE, train(args.out, args.seconds, torch.device(args.device), batch=args.batch), flush=True)


if __name__ == "__main__":
    main()
