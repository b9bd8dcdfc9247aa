"""Session 35's CPU check (a record, not a module): do updates restricted to part of the one-step student's weights take up
the gain of its samples moved along DMD's gradient with less collateral move? Sessions 29-30 found a regression of all
weights onto such moved samples moves each sample along its line x0 -> target about as far as off it, and the off-line
part costs what the along-line part gains (training/results/call29/record.md, call30/record.md).

1. The shipped student's one-step latents x0 on N seen captions are moved along DMD's gradient (training.sample_flow's
   flow_step: run 35a's critic as the fake score, teacher w = 6, 4 draws, step 0.01, ITERATIONS iterations): targets x.
2. For each subset of weights (all; the cross-attention layers attn2, where the caption enters; the up blocks), a copy of
   the student is regressed onto the targets (full batch, AdamW at each of LRS, UPDATES updates), then judged: on the trained
   captions, on the move's part along each sample's line and off it (each added alone to x0), and on OTHER other
   captions (is anything learnt beyond the samples?).

    python training/results/call35/subset_probe.py   # ~20 minutes on this repo's 2 CPU cores (output: subset_probe.txt)
    SUBSETS=attn2 LRS="1.5e-5 6e-5" python training/results/call35/subset_probe.py   # (subset_probe_attn2_lr.txt)
"""

import copy
import os
import tempfile
from pathlib import Path

import torch

from training.analysis import ROOT
from training.data import sample_scenes, tokenize
from training.distill_add import decode, one_step_x0
from training.export import import_weights
from training.judge import caption_accuracy
from training.one_step import caption_embeddings, load_student_beside, student_latents
from training.sample_flow import flow_step
from training.text_unet import EMPTY_PROMPT

N, OTHER, B = int(os.environ.get("N", "256")), int(os.environ.get("OTHER", "512")), 64
ITERATIONS, UPDATES = int(os.environ.get("ITERATIONS", "15")), int(os.environ.get("UPDATES", "32"))
LRS = [float(lr) for lr in os.environ.get("LRS", "3e-6").split()]
SUBSETS = {"all": lambda name: True, "attn2": lambda name: ".attn2." in name, "up_blocks": lambda name: name.startswith("up_blocks.")}
SUBSETS = {k: v for k, v in SUBSETS.items() if k in os.environ.get("SUBSETS", "all attn2 up_blocks").split()}
torch.set_num_threads(2)
run = Path(tempfile.mkdtemp())
import_weights(ROOT / "weights", run)
parts = load_student_beside(run, ROOT / "weights/bundled_turbo/unet", ROOT / "runs/critic35a", torch.device("cpu"))
gen = torch.Generator().manual_seed(35)
captions = [s.caption for s in sample_scenes(3501, N, "train")]
others = [s.caption for s in sample_scenes(3502, OTHER, "train")]
with torch.no_grad():
    text, text_other = caption_embeddings(parts, captions, B), caption_embeddings(parts, others, B)
    empty = parts.teacher.text_encoder(tokenize([EMPTY_PROMPT])).last_hidden_state
noise, noise_other = torch.randn((N, 4, 16, 16), generator=gen), torch.randn((OTHER, 4, 16, 16), generator=gen)


@torch.no_grad()
def accuracy(x: torch.Tensor, caps: list) -> float:
    return caption_accuracy(parts.judge, decode(parts.vae, x, parts.scaling).clamp(0, 1), caps)[0]["caption"]


x0 = student_latents(parts.student, parts, noise, text, B)
x = x0.clone()
with torch.no_grad():
    for _ in range(ITERATIONS):
        flow_step(parts, x, list(text.split(B)), empty, gen, (20, 980), 6.0, 0.01, draws=4)
line = x - x0
print(f"{N} captions: student {accuracy(x0, captions):.3f}, targets {accuracy(x, captions):.3f} "
      f"(mean |x - x0| {line.abs().mean():.4f}); {OTHER} other captions: student "
      f"{accuracy(student_latents(parts.student, parts, noise_other, text_other, B), others):.3f}", flush=True)

for subset, keep, lr in [(subset, keep, lr) for subset, keep in SUBSETS.items() for lr in LRS]:
    student = copy.deepcopy(parts.student).train()
    params = [p for name, p in student.named_parameters() if keep(name)]
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for _ in range(UPDATES):
        opt.zero_grad(set_to_none=True)
        for i in range(0, N, B):
            out = one_step_x0(student, noise[i : i + B], text[i : i + B], parts.alpha_bar)
            (((out - x[i : i + B]) ** 2).mean() * (len(out) / N)).backward()
        opt.step()
    student.eval()
    after = student_latents(student, parts, noise, text, B)
    move = after - x0
    along = (move * line).flatten(1).sum(1) / line.pow(2).flatten(1).sum(1).clamp(min=1e-12)
    part_along = along.view(-1, 1, 1, 1) * line
    part_off = move - part_along
    print(f"{subset} lr {lr:g}: {sum(p.numel() for p in params) / 1e6:.2f}M weights; trained captions {accuracy(after, captions):.3f}; "
          f"along its line {accuracy(x0 + part_along, captions):.3f} (mean fraction {along.mean():.2f}), off it "
          f"{accuracy(x0 + part_off, captions):.3f} (|off| / |along| {part_off.norm() / part_along.norm().clamp(min=1e-12):.2f}); "
          f"other captions {accuracy(student_latents(student, parts, noise_other, text_other, B), others):.3f}", flush=True)
