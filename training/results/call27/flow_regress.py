"""Session 27's CPU check (a record, not a module): can the one-step student's weights take up the gain of its samples
moved along DMD's gradient (training.sample_flow)? N (noise, seen caption) samples of the shipped student are moved
ITERS steps of STEP along single draws (run 26a's critic in runs/critic27, w = 6; cached in runs/flowreg/), then a copy
of the student is regressed onto them (AdamW at LR, batch 32, EPOCHS passes), judged every EVERY passes on those
captions and on 256 others with other noise.

    python training/results/call27/flow_regress.py N ITERS STEP EPOCHS LR [EVERY] [LAYERS] [NEW_LR]    # session 27: 512 8 0.01 {4, 8} {1e-5, 1e-6}

LAYERS (session 28, e.g. 1,1,3): the copy is grown first (training.grow, seed 0): does a student with more capacity
take up more of the moved samples' gain? NEW_LR: the new layers' own learning rate (default LR).
LOSS=pixel in the environment (session 29): the regression compares decoded images (through the frozen VAE decoder)
instead of latents, so the fit is weighted by what an image shows.
"""

import copy
import os
import sys
import tempfile
from pathlib import Path

import torch

from training.analysis import ROOT
from training.checkpoint import clipped_step
from training.data import sample_scenes, tokenize
from training.distill_add import decode, one_step_x0
from training.distill_dmd import T_MAX, T_MIN
from training.export import import_weights
from training.judge import caption_accuracy
from training.one_step import ANALYSIS_SEED, load_student_beside
from training.sample_flow import flow_step
from training.text_unet import EMPTY_PROMPT

N, ITERS, STEP, EPOCHS, LR = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
EVERY = int(sys.argv[6]) if len(sys.argv) > 6 else 1
LAYERS = [int(n) for n in sys.argv[7].split(",")] if len(sys.argv) > 7 else None
NEW_LR = float(sys.argv[8]) if len(sys.argv) > 8 else LR
PIXEL = os.environ.get("LOSS", "latent") == "pixel"
B = 64
torch.set_num_threads(2)
run = Path(tempfile.mkdtemp())
import_weights(ROOT / "weights", run)
parts = load_student_beside(run, ROOT / "weights/bundled_turbo/unet", ROOT / "runs/critic27", torch.device("cpu"))
teacher, vae, judge, scaling, alpha_bar, student = parts[:6]
gen = torch.Generator().manual_seed(1)
empty = teacher.text_encoder(tokenize([EMPTY_PROMPT])).last_hidden_state


@torch.no_grad()
def embed(caps: list) -> torch.Tensor:
    return torch.cat([teacher.text_encoder(tokenize([c.text for c in caps[i : i + B]])).last_hidden_state for i in range(0, len(caps), B)])


@torch.no_grad()
def generate(unet: torch.nn.Module, noise: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return torch.cat([one_step_x0(unet, noise[i : i + B], text[i : i + B], alpha_bar) for i in range(0, len(noise), B)])


@torch.no_grad()
def accuracy(x: torch.Tensor, caps: list) -> float:
    return caption_accuracy(judge, decode(vae, x, scaling).clamp(0, 1), caps)[0]["caption"]


train_caps = [s.caption for s in sample_scenes(777, N, "train")]
held_caps = [s.caption for s in sample_scenes(ANALYSIS_SEED, 256, "train")]
train_noise, held_noise = torch.randn((N, 4, 16, 16), generator=gen), torch.randn((256, 4, 16, 16), generator=gen)
train_text, held_text = embed(train_caps), embed(held_caps)
cache = ROOT / "runs" / "flowreg" / f"targets_{N}_{ITERS}_{STEP:g}.pt"
if cache.exists():
    x, x_start = (torch.load(cache)[k] for k in ("x", "x0"))
else:
    x = generate(student, train_noise, train_text)
    x_start = x.clone()
    for _ in range(ITERS):
        flow_step(parts, x, list(train_text.split(B)), empty, gen, (T_MIN, T_MAX), 6.0, STEP)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": x, "x0": x_start}, cache)
print("start: train", accuracy(x_start, train_caps), "held", accuracy(generate(student, held_noise, held_text), held_caps),
      "targets", accuracy(x, train_caps), "MSE to targets", ((x - x_start) ** 2).mean().item(), flush=True)
regressed = copy.deepcopy(student)
if LAYERS is not None:
    from training.grow import grow_unet

    torch.manual_seed(0)
    regressed = grow_unet(regressed, LAYERS)
regressed = regressed.train().requires_grad_(True)
kept = student.state_dict().keys()
groups = [[p for name, p in regressed.named_parameters() if (name in kept) == old] for old in (True, False)]
opt = torch.optim.AdamW([{"params": groups[0], "lr": LR}, {"params": groups[1], "lr": NEW_LR}], weight_decay=0.0)
vae.requires_grad_(False)
with torch.no_grad():
    x_images = torch.cat([decode(vae, x[i : i + B], scaling) for i in range(0, N, B)]) if PIXEL else None
for epoch in range(1, EPOCHS + 1):
    total = 0.0
    for rows in torch.randperm(N, generator=gen).split(32):
        out = one_step_x0(regressed, train_noise[rows], train_text[rows], alpha_bar)
        loss = ((decode(vae, out, scaling) - x_images[rows]) ** 2).mean() if PIXEL else ((out - x[rows]) ** 2).mean()
        clipped_step(opt, loss, regressed.parameters())
        total += loss.item()
    if epoch % EVERY == 0:
        regressed.eval()
        print(f"epoch {epoch}: MSE {total / -(-N // 32):.5f} train", accuracy(generate(regressed, train_noise, train_text), train_caps),
              "held", accuracy(generate(regressed, held_noise, held_text), held_caps), flush=True)
        regressed.train()
