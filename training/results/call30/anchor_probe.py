"""Session 30's CPU check (a record, not a module): does an output anchor remove the collateral move that kept the
one-step student from taking up the gain of its DMD-moved samples (session 29, `training/results/call29/flow_probe.py`)?

Session 29 found that a regression of the student onto its own samples moved along DMD's gradient moves each sample
part of the way along its line x0 -> x (useful) and about as far in other directions (harmful), so the net is no gain.
If that other part is shared by all samples (the update's common directions), a penalty on the change of the student's
outputs at other (noise, caption) pairs, the anchors, should remove it and keep the useful part:

    loss = mean |f(z_i, c_i) - x_i|^2  +  LAMBDA * mean |f(z_a, c_a) - f_start(z_a, c_a)|^2

Targets: N samples of the shipped student moved ITERS steps of STEP along DMD's gradient with the unguided teacher as
the fake score (the guidance direction at w = 6; session 27's critic is not in this checkout), single draws
(training.sample_flow.flow_step). Each variant: UPDATES full-batch AdamW updates at LR from the shipped student (all N
samples per update, and all N anchors), then the move split along / off each sample's line and judged (session 29's
split), and the student judged on 256 other captions with other noise. A control judges the start plus isotropic
Gaussian noise of the same size as the regression's off-line part: is that part's harm specific or generic?

    python training/results/call30/anchor_probe.py LAMBDA [LAMBDA ...]   # 0 is the plain regression; ~15 / 25 min each
    env: N=512 ITERS=8 STEP=0.02 UPDATES=32 LR=3e-6 OTHERS=256 (captions judged beside); REFINE=300: targets re-solved
"""

import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from training.analysis import ROOT
from training.data import sample_scenes, tokenize
from training.distill_add import one_step_x0
from training.distill_dmd import T_MAX, T_MIN
from training.distill_refine import refine
from training.export import import_weights
from training.one_step import (
    caption_embeddings,
    latent_accuracy,
    load_student_beside,
    student_latents,
)
from training.sample_flow import flow_step
from training.text_unet import EMPTY_PROMPT

N, ITERS, STEP = int(os.environ.get("N", "512")), int(os.environ.get("ITERS", "8")), float(os.environ.get("STEP", "0.02"))
UPDATES, LR, B = int(os.environ.get("UPDATES", "32")), float(os.environ.get("LR", "3e-6")), 64
LAMBDAS = [float(v) for v in sys.argv[1:]] or [0.0]
REFINE = int(os.environ.get("REFINE", "0"))  # s > 0: targets are the teacher's re-solves from s instead
QUANTILES = torch.tensor([0.5, 0.9, 0.99, 1.0])
torch.set_num_threads(2)
run = Path(tempfile.mkdtemp())
import_weights(ROOT / "weights", run)
parts = load_student_beside(run, ROOT / "weights/bundled_turbo/unet", None, torch.device("cpu"))
teacher, vae, judge, scaling, alpha_bar, student = parts[:6]
gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    empty = teacher.text_encoder(tokenize([EMPTY_PROMPT])).last_hidden_state


def embed(caps: list) -> torch.Tensor:
    return caption_embeddings(parts, caps, B)


def outputs(unet: torch.nn.Module, noise: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return student_latents(unet, parts, noise, text, B)


def accuracy(latents: torch.Tensor, caps: list) -> float:
    return latent_accuracy(parts, latents, caps)


def quantiles(v: torch.Tensor) -> str:
    return " / ".join(f"{q:.4f}" for q in v.quantile(QUANTILES).tolist())


captions = [s.caption for s in sample_scenes(777, N, "train")]  # trained samples
anchor_caps = [s.caption for s in sample_scenes(778, N, "train")]  # anchors: other captions, other noise
OTHERS = int(os.environ.get("OTHERS", "256"))
other_caps = [s.caption for s in sample_scenes(4343, OTHERS, "train")]  # judged only
noise, anchor_noise = torch.randn((N, 4, 16, 16), generator=gen), torch.randn((N, 4, 16, 16), generator=gen)
other_noise = torch.randn((OTHERS, 4, 16, 16), generator=torch.Generator().manual_seed(99))
text, anchor_text, other_text = embed(captions), embed(anchor_caps), embed(other_caps)
t0 = time.monotonic()
x0 = outputs(student, noise, text)
anchor_start = outputs(student, anchor_noise, anchor_text)
if REFINE:  # the teacher's guided DDIM re-solve of each sample re-noised to s with its own noise (training.distill_refine)
    with torch.no_grad():
        x = torch.cat([refine(teacher, x0[i : i + B], noise[i : i + B], torch.cat((text[i : i + B], empty.expand(len(text[i : i + B]), -1, -1))),
                              REFINE, 8, alpha_bar) for i in range(0, N, B)])
    made = f"the teacher's DDIM 8 re-solve from s = {REFINE}"
else:
    x = x0.clone()
    for _ in range(ITERS):
        flow_step(parts, x, list(text.split(B)), empty, gen, (T_MIN, T_MAX), 6.0, STEP)
    made = f"{ITERS} x {STEP:g} along the guidance direction"
print(f"targets: {N} samples, {made} ({time.monotonic() - t0:.0f} s); MSE to the start {((x - x0) ** 2).mean():.4f}")
print(f"   start {accuracy(x0, captions):.3f}, targets {accuracy(x, captions):.3f}, "
      f"{OTHERS} other captions {accuracy(outputs(student, other_noise, other_text), other_caps):.3f}", flush=True)
for mse in (0.0005, 0.001, 0.002):
    jitter = x0 + torch.randn(x0.shape, generator=torch.Generator().manual_seed(5)) * mse**0.5
    print(f"   control: start + Gaussian noise of MSE {mse:g}: {accuracy(jitter, captions):.3f}", flush=True)

for lam in LAMBDAS:
    t0 = time.monotonic()
    regressed = copy.deepcopy(student).train().requires_grad_(True)
    opt = torch.optim.AdamW(regressed.parameters(), lr=LR, weight_decay=0.0)
    print(f"lambda {lam:g}: {UPDATES} full-batch AdamW updates at lr {LR:g}", flush=True)
    for update in range(UPDATES):
        opt.zero_grad(set_to_none=True)
        fit = anchored = 0.0
        for rows in torch.arange(N).split(32):
            loss = ((one_step_x0(regressed, noise[rows], text[rows], alpha_bar) - x[rows]) ** 2).mean() / (N // 32)
            loss.backward()
            fit += loss.item()
            if lam > 0:
                drift = ((one_step_x0(regressed, anchor_noise[rows], anchor_text[rows], alpha_bar) - anchor_start[rows]) ** 2).mean()
                (lam * drift / (N // 32)).backward()
                anchored += drift.item() / (N // 32)
        torch.nn.utils.clip_grad_norm_(regressed.parameters(), 1.0)
        opt.step()
        if update % 8 == 7:
            print(f"   update {update + 1}: fit {fit:.5f}, anchor drift {anchored:.5f} ({time.monotonic() - t0:.0f} s)", flush=True)
    regressed.eval()
    after = outputs(regressed, noise, text)
    line = x - x0
    along = ((after - x0) * line).flatten(1).sum(1) / (line**2).flatten(1).sum(1)
    on_line = x0 + along.view(-1, 1, 1, 1) * line
    print("   per-sample MSE to the targets, q50 / q90 / q99 / max: start", quantiles(((x0 - x) ** 2).flatten(1).mean(1)),
          "after", quantiles(((after - x) ** 2).flatten(1).mean(1)))
    print("   the move along the line (alpha per sample):", quantiles(along), f"mean {along.mean():.3f}")
    print("   the rest of the move (MSE):", quantiles(((after - on_line) ** 2).flatten(1).mean(1)))
    print(f"   anchors' drift (MSE): {((outputs(regressed, anchor_noise, anchor_text) - anchor_start) ** 2).mean():.5f}")
    for label, latents in (("after", after), ("the part along the line alone", on_line), ("the rest alone", x0 + after - on_line)):
        print(f"   accuracy of {label}: {accuracy(latents, captions):.3f}", flush=True)
    print(f"   {OTHERS} other captions: {accuracy(outputs(regressed, other_noise, other_text), other_caps):.3f} "
          f"({time.monotonic() - t0:.0f} s)", flush=True)
