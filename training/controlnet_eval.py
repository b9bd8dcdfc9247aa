"""Does the sketch ControlNet follow the strokes? IoU of generated object masks vs the sketch.

On a fixed held set (captions + scenes from `sample_scenes(EVAL_SEED, count, split)`, drawn as
un-jittered outlines), four generators get the same captions, seeds and guidance (DDIM 25,
CFG w = 4):
  - controlnet: the teacher with the ControlNet fed the stroke image (control scale 1, and 0.5);
  - sdedit@s: SDEdit img2img (Meng et al. 2022) from the stroke image itself at strength s
    (0.6, 0.8): encode, noise to the timestep where the last s of the DDIM steps begin, denoise
    with the caption - what pipelines.text_to_image does with init_image and strength;
  - teacher: no control at all (the IoU a layout-blind sample gets by chance).
Each image's objects are segmented by `training.sketch.extract_mask` and compared with the
sketch's filled object masks (IoU per image, then the mean); the judge scores whole-caption
accuracy. Two ceilings are reported with them: the extractor's IoU on the true renders of the
same scenes, and on their VAE reconstructions (decode of the posterior mean) - no latent model
can draw sharper than its decoder, and the f = 4 decoder blurs small crosses into blobs.
Writes RESULTS/controlnet_eval.json and RESULTS/controlnet_samples.png
(columns: sketch | ControlNet | SDEdit 0.6 | SDEdit 0.8 | teacher, one scene per row), and
copies the stage's loss plot and state there (controlnet_loss.png, controlnet_state.json).

    python -m training.controlnet_eval --out RUN [--results DIR] [--count 256] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel
from torch import Tensor

from training.checkpoint import load_weights
from training.controlnet import STAGE, controlled_eps, load_controlnet, load_teacher
from training.data import Caption, sample_scenes, scenes_to_batch, tokenize
from training.diffusion import alphas_cumprod, leading_timesteps
from training.judge import caption_accuracy
from training.models import Judge
from training.sketch import extract_mask, iou, sketch_scenes
from training.text_unet import EMPTY_PROMPT, TextUNet

EVAL_SEED = 4242
GUIDANCE = 4.0
STEPS = 25
STRENGTHS = (0.6, 0.8)
CONTROL_SCALES = (1.0, 0.5)
EpsFn = Callable[[Tensor, Tensor], Tensor]


def held_set(count: int, split: str, device: torch.device) -> tuple[list[Caption], Tensor, Tensor, Tensor]:
    """(captions, renders (B, 3, 64, 64), true masks (B, 64, 64), stroke images (B, 3, 64, 64)), fixed by EVAL_SEED."""
    scenes = sample_scenes(EVAL_SEED, count, split)
    gen = torch.Generator(device=device).manual_seed(EVAL_SEED)
    drawn = sketch_scenes(scenes_to_batch(scenes).to(device), gen, jitter=False)
    return [s.caption for s in scenes], drawn.images, drawn.masks, drawn.sketches


@torch.no_grad()
def ddim(eps_fn: EpsFn, x: Tensor, timesteps: list[int], alpha_bar: Tensor) -> Tensor:
    """DDIM, eta = 0, over the given descending timesteps (the last step lands on alpha_bar[0])."""
    for i, t in enumerate(timesteps):
        a_t = alpha_bar[t].to(x.dtype)
        a_prev = alpha_bar[timesteps[i + 1] if i + 1 < len(timesteps) else 0].to(x.dtype)
        eps = eps_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


@torch.no_grad()
def sample(teacher: TextUNet, vae: AutoencoderKL, scaling: float, texts: list[str], seed: int, device: torch.device, *,
           controlnet: ControlNetModel | None = None, control: Tensor | None = None, control_scale: float = 1.0,
           init: Tensor | None = None, strength: float = 1.0, guidance: float = GUIDANCE, steps: int = STEPS) -> Tensor:
    """Images (B, 3, 64, 64) in [0, 1]: CFG DDIM, optionally with the ControlNet (on the cond and
    uncond rows alike, as the server applies it) or SDEdit from `init` at `strength`."""
    cuda = device.type == "cuda"
    alpha_bar = alphas_cumprod(device)
    b = len(texts)
    tokens = torch.cat((tokenize(texts), tokenize([EMPTY_PROMPT] * b))).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        text = teacher.text_encoder(tokens).last_hidden_state
    both_control = None if control is None else torch.cat((control, control)).to(device)

    def eps_fn(x: Tensor, t: Tensor) -> Tensor:
        xx, tt = torch.cat((x, x)), torch.cat((t, t))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            if controlnet is not None and both_control is not None:
                out = controlled_eps(teacher.unet, controlnet, xx, tt, text, both_control, control_scale)
            else:
                out = teacher.unet(xx, tt, encoder_hidden_states=text).sample
        cond, uncond = out.float().chunk(2)
        return uncond + guidance * (cond - uncond)

    gen = torch.Generator(device=device).manual_seed(seed)
    timesteps = leading_timesteps(steps)
    noise = torch.randn((b, 4, 16, 16), generator=gen, device=device)
    if init is None:
        x = noise
    else:
        used = min(int(steps * strength), steps)  # diffusers' img2img get_timesteps
        timesteps = timesteps[steps - used :]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            x0 = vae.encode(init.to(device) * 2 - 1).latent_dist.mean.float() * scaling
        a = alpha_bar[timesteps[0]].float()
        x = a.sqrt() * x0 + (1 - a).sqrt() * noise
    latents = ddim(eps_fn, x, timesteps, alpha_bar)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        images = vae.decode(latents / scaling).sample.float()
    return (images.clamp(-1, 1) + 1) / 2


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: Tensor, device: torch.device) -> Tensor:
    """decode(mean of encode(images)) in [0, 1]: the best any generator in this latent space can draw."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = vae.decode(vae.encode(images * 2 - 1).latent_dist.mean).sample.float()
    return (out.clamp(-1, 1) + 1) / 2


def sample_set(teacher: TextUNet, vae: AutoencoderKL, scaling: float, texts: list[str], device: torch.device,
               batch: int, control: Tensor | None = None, init: Tensor | None = None, **options: object) -> Tensor:
    """`sample` over a whole set in batches of `batch`; rows starting at i use seed 99 + i."""
    parts = []
    for i in range(0, len(texts), batch):
        rows = slice(i, i + batch)
        parts.append(sample(teacher, vae, scaling, texts[rows], 99 + i, device,
                            control=None if control is None else control[rows],
                            init=None if init is None else init[rows], **options))  # type: ignore[arg-type]
    return torch.cat(parts)


def evaluate(out: Path, results: Path, count: int, device: torch.device, steps: int = STEPS) -> dict[str, object]:
    """Run the comparison on both splits; write the JSON and the sample grid; return the metrics."""
    start = time.monotonic()
    teacher, vae, scaling = load_teacher(out, device)
    controlnet = load_controlnet(out, teacher, device)
    judge = Judge().to(device).eval()
    has_judge = load_weights(judge, out / "judge" / "judge.safetensors")
    size = 256 if device.type == "cuda" else 8
    metrics: dict[str, object] = {"count_per_split": count, "steps": steps, "guidance": GUIDANCE, "device": str(device)}
    grid_columns: list[Tensor] = []
    for split, name in (("train", "seen"), ("heldout", "heldout")):
        captions, renders, masks, sketches = held_set(count, split, device)
        texts = [c.text for c in captions]
        outputs: dict[str, Tensor] = {}
        common = {"steps": steps}
        for scale in CONTROL_SCALES:
            outputs[f"controlnet_s{scale:g}"] = sample_set(teacher, vae, scaling, texts, device, size, control=sketches,
                                                           controlnet=controlnet, control_scale=scale, **common)
        for strength in STRENGTHS:
            outputs[f"sdedit_{strength:g}"] = sample_set(teacher, vae, scaling, texts, device, size, init=sketches,
                                                         strength=strength, **common)
        outputs["teacher"] = sample_set(teacher, vae, scaling, texts, device, size, **common)
        metrics[f"{name}_extractor_iou_on_renders"] = float(iou(extract_mask(renders), masks).mean())
        rebuilt = torch.cat([reconstruct(vae, renders[i : i + size], device) for i in range(0, count, size)])
        metrics[f"{name}_vae_reconstruction_iou"] = float(iou(extract_mask(rebuilt), masks).mean())
        for key, images in outputs.items():
            per_image = iou(extract_mask(images), masks)
            metrics[f"{name}_{key}_iou"] = float(per_image.mean())
            metrics[f"{name}_{key}_iou_ge_0.8"] = float((per_image >= 0.8).float().mean())
            if has_judge:
                acc, _ = caption_accuracy(judge, images, captions)
                metrics[f"{name}_{key}_caption"] = acc["caption"]
        if split == "train":
            rows = min(8, count)
            grid_columns = [sketches[:rows], outputs["controlnet_s1"][:rows], outputs["sdedit_0.6"][:rows],
                            outputs["sdedit_0.8"][:rows], outputs["teacher"][:rows]]
            (results / "controlnet_samples.txt").parent.mkdir(parents=True, exist_ok=True)
            (results / "controlnet_samples.txt").write_text("\n".join(texts[:rows]) + "\n")
    metrics["eval_seconds"] = time.monotonic() - start
    results.mkdir(parents=True, exist_ok=True)
    (results / "controlnet_eval.json").write_text(json.dumps(metrics, indent=1) + "\n")
    save_grid(grid_columns, results / "controlnet_samples.png")
    for name in ("loss.png", "state.json"):  # the training record travels with the results
        source = out / STAGE / name
        if source.exists() and source.parent.resolve() != results.resolve():
            shutil.copy(source, results / f"controlnet_{name}")
    return metrics


def save_grid(columns: list[Tensor], path: Path) -> None:
    """Columns of (R, 3, 64, 64) images in [0, 1] side by side, one scene per row, as a PNG."""
    from PIL import Image

    grid = torch.stack([c.float().cpu() for c in columns], dim=1)  # (R, C, 3, 64, 64)
    r, c = grid.shape[:2]
    pixels = grid.permute(0, 3, 1, 4, 2).reshape(r * 64, c * 64, 3)
    Image.fromarray((pixels * 255).round().byte().numpy()).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the run directory (teacher + controlnet stage)")
    parser.add_argument("--results", type=Path, default=None, help=f"default: OUT/{STAGE}")
    parser.add_argument("--count", type=int, default=256, help="scenes per split (seen and held-out)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    results = args.results or args.out / STAGE
    print("controlnet_eval", evaluate(args.out, results, args.count, torch.device(args.device), args.steps), flush=True)


if __name__ == "__main__":
    main()
