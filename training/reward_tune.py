"""Reward fine-tuning of a one-step student: raise log P(caption holds) of its decoded samples under the reward
model (training.reward), with an anchor to its starting outputs.

Each update draws seen-split captions and noise, decodes the student's one-step samples through the frozen VAE,
augments them as the judge's renders are (blur, pixel noise, colour shift: the reward must hold for nearby images,
not one exact image), and ascends the reward model's caption log-likelihood; the anchor adds
`anchor` x the mean squared distance of the latents from the starting student's on the same noise. The judge never
enters training: every `every` updates it scores the student's samples on fixed seen captions (the CPU analyses'
set, training.one_step.seen_samples), and paired_compare checks a result on fresh seen and held-out captions.

    python -m training.reward_tune RUN UNET OUT [--steps 200] [--batch 32] [--lr 3e-6] [--anchor 0] [--every 25]
        [--device cpu]

RUN holds the teacher, VAE, judge (training.export --import) and reward model; UNET is the student's diffusers
folder; OUT receives the tuned UNet (fp16, OUT/unet), its log and the probe's rows (OUT/reward_tune.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from training.data import sample_scenes
from training.distill_add import decode, one_step_x0
from training.export import MAX_SHARD
from training.judge import augment
from training.one_step import (
    caption_embeddings,
    judged,
    load_student_beside,
    seen_samples,
    student_latents,
)
from training.reward import caption_reward, load_reward


def tune(run: Path, unet: Path, out: Path, steps: int, batch: int, lr: float, anchor: float, every: int,
         device: torch.device, probe_captions: int = 256, seed: int = 0) -> list[dict[str, float]]:
    """Train the student for `steps` updates; the probe's rows (step, accuracy, three-object accuracy, reward, mean
    |x - x_start| on the probe set) at 0 and every `every`."""
    parts = load_student_beside(run, unet, None, device)
    reward = load_reward(run, device)
    student = parts.student.requires_grad_(True)
    start = copy.deepcopy(student).requires_grad_(False)
    probe = seen_samples(parts, probe_captions, 64, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(seed)
    aug = torch.Generator(device=device).manual_seed(seed + 1)
    rng_seed = 10_000 + seed
    rows: list[dict[str, float]] = []
    recent: list[float] = []

    def row(step: int) -> dict[str, float]:
        student.eval()
        x = student_latents(student, parts, probe.noise, torch.cat(probe.texts), 64)
        accuracy, three = judged(parts, x, probe)
        return {"step": step, "accuracy": accuracy, "three_objects": three,
                "reward": sum(recent) / len(recent) if recent else float("nan"),
                "moved": (x - probe.x).abs().mean().item()}

    rows.append(row(0))
    print(rows[-1], flush=True)
    began = time.monotonic()
    for step in range(1, steps + 1):
        captions = [s.caption for s in sample_scenes(rng_seed + step, batch, "train")]
        text = caption_embeddings(parts, captions, batch)
        noise = torch.randn((batch, 4, 16, 16), generator=gen, device=device)
        x = one_step_x0(student, noise, text, parts.alpha_bar)
        images = augment(decode(parts.vae, x, parts.scaling).clamp(0, 1), aug)
        r = caption_reward(reward, images, captions)
        loss = -r.mean()
        if anchor > 0:
            with torch.no_grad():
                x_start = one_step_x0(start, noise, text, parts.alpha_bar)
            loss = loss + anchor * (x - x_start).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        recent = (recent + [r.exp().mean().item()])[-every:]
        if step % every == 0 or step == steps:
            rows.append(row(step) | {"seconds": time.monotonic() - began})
            print(rows[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    student.half().save_pretrained(out / "unet", max_shard_size=MAX_SHARD, safe_serialization=True)
    settings = {"unet": str(unet), "steps": steps, "batch": batch, "lr": lr, "anchor": anchor, "seed": seed}
    (out / "reward_tune.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("unet", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument("--anchor", type=float, default=0.0, help="weight of the mean squared move from the start's latents")
    parser.add_argument("--every", type=int, default=25, help="probe with the judge every this many updates")
    parser.add_argument("--probe-captions", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    tune(args.run, args.unet, args.out, args.steps, args.batch, args.lr, args.anchor, args.every,
         torch.device(args.device), args.probe_captions, args.seed)


if __name__ == "__main__":
    main()
