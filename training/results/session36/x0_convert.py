"""Carry the shipped one-step student over to a UNet that predicts x0 itself (prediction_type "sample").

The served student predicts eps at t = 999, where sqrt(alpha_bar) = 0.068: its sample is
x0 = (z - sqrt(1 - a) eps) / sqrt(a), so the UNet must pass its input noise z through to its output and add the image
at 1/14.7 of that scale; any change of how it passes z on moves x0 14.7 times as far, differently for every noise.
Sessions 27-35 found that every update of the student moves its samples about as far off the wanted direction as
along it. A UNet whose output is x0 needs no such pass-through. This regresses such a UNet, started from the
student's weights, onto the student's own samples (same noise and caption; fresh seen captions every update) and
probes it with the judge: can the student's map be carried over, and how fast.

    python training/results/session36/x0_convert.py WEIGHTS OUT --seconds S [--lr 1e-4] [--batch 512] [--tag a] [--save ema|raw]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from training.data import sample_scenes
from training.distill_add import one_step_x0
from training.export import MAX_SHARD, import_weights
from training.one_step import (
    caption_embeddings,
    latent_accuracy,
    load_student_beside,
    student_latents,
)

parser = argparse.ArgumentParser()
parser.add_argument("weights", type=Path)
parser.add_argument("out", type=Path)
parser.add_argument("--seconds", type=float, required=True)
parser.add_argument("--lr", type=float, default=1e-4)
parser.add_argument("--batch", type=int, default=512)
parser.add_argument("--warmup", type=int, default=200)
parser.add_argument("--ema", type=float, default=0.999)
parser.add_argument("--probe-every", type=float, default=60.0)
parser.add_argument("--probe-captions", type=int, default=512)
parser.add_argument("--tag", default="a")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--save", choices=("ema", "raw"), default="ema", help="which weights to keep")
args = parser.parse_args()
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
cuda = device.type == "cuda"
torch.manual_seed(args.seed)
run = Path(tempfile.mkdtemp())
import_weights(args.weights, run)
parts = load_student_beside(run, args.weights / "bundled_turbo" / "unet", None, device)
old = parts.student.requires_grad_(False)
new = copy.deepcopy(old).requires_grad_(True).train()
ema = copy.deepcopy(old).requires_grad_(False)


T = torch.full((args.batch,), 999, dtype=torch.long, device=device)

probe = {}
for split, seed in (("train", 3636), ("heldout", 3637)):
    captions = [s.caption for s in sample_scenes(seed, args.probe_captions, split)]
    noise = torch.randn((len(captions), 4, 16, 16), generator=torch.Generator().manual_seed(seed)).to(device)
    text = caption_embeddings(parts, captions, 256)
    probe[split] = (captions, noise, text, student_latents(old, parts, noise, text, 256))


@torch.no_grad()
def x0_of(unet: torch.nn.Module, noise: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    def one(rows: slice) -> torch.Tensor:
        t = torch.full((len(noise[rows]),), 999, dtype=torch.long, device=device)
        return unet(noise[rows], t, encoder_hidden_states=text[rows]).sample.float()

    return torch.cat([one(slice(i, i + 256)) for i in range(0, len(noise), 256)])


def probe_row(step: int, elapsed: float, loss: float) -> dict[str, object]:
    row: dict[str, object] = {"step": step, "seconds": round(elapsed, 1), "loss": loss}
    for name, unet in (("raw", new), ("ema", ema)):
        unet.eval()
        for split, (captions, noise, text, target) in probe.items():
            x = x0_of(unet, noise, text)
            row[f"{name}_{split}_accuracy"] = latent_accuracy(parts, x, captions)
            row[f"{name}_{split}_mse"] = (x - target).pow(2).mean().item()
    new.train()
    print(json.dumps(row), flush=True)
    return row


rows = [{"step": 0, **{f"start_{split}_accuracy": latent_accuracy(parts, p[3], p[0]) for split, p in probe.items()}}]
print(json.dumps(rows[0]), flush=True)
opt = torch.optim.AdamW(new.parameters(), lr=args.lr, weight_decay=0.0)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / args.warmup))
gen = torch.Generator(device=device).manual_seed(args.seed)
began = last_probe = time.monotonic()
step = 0
loss_value = float("nan")
while time.monotonic() - began < args.seconds:
    step += 1
    captions = [s.caption for s in sample_scenes(40_000 + 1000 * args.seed + step, args.batch, "train")]
    text = caption_embeddings(parts, captions, args.batch)
    noise = torch.randn((args.batch, 4, 16, 16), generator=gen, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        target = one_step_x0(old, noise, text, parts.alpha_bar).float()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        pred = new(noise, T, encoder_hidden_states=text).sample.float()
    loss = (pred - target).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(new.parameters(), 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        for e, p in zip(ema.parameters(), new.parameters()):
            e.lerp_(p, 1 - args.ema)
    loss_value = loss.item() if step % 20 == 0 else loss_value
    if time.monotonic() - last_probe > args.probe_every:
        rows.append(probe_row(step, time.monotonic() - began, loss_value))
        last_probe = time.monotonic()
rows.append(probe_row(step, time.monotonic() - began, loss_value))
out = args.out / f"x0_{args.tag}"
out.mkdir(parents=True, exist_ok=True)
(ema if args.save == "ema" else new).half().save_pretrained(out / "unet", max_shard_size=MAX_SHARD, safe_serialization=True)
(out / "x0_convert.json").write_text(json.dumps({"settings": vars(args) | {"weights": str(args.weights), "out": str(args.out)},
                                                 "device": torch.cuda.get_device_name() if cuda else "cpu", "rows": rows}, indent=1) + "\n")
