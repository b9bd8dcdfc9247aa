"""Session 36's CPU check (a record, not a module): is the collateral move of sessions 29-35 a property of the eps
parameterisation at t = 999? call35/subset_probe.py's measurement (every weight trained) for the shipped student and
for the x0-predicting student of x0_convert.py run c (prediction_type "sample"; its raw weights at 2,799 updates, carried
back to runs/x0c/unet), each regressed onto its own samples moved along DMD's gradient with the teacher unguided as the
fake score (no critic), at each of LRS.

    python training/results/session36/collateral_probe.py   # ~25 minutes on this repo's 2 CPU cores (collateral_probe.txt)
"""

import copy
import os
import tempfile
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from training.analysis import ROOT
from training.data import sample_scenes, tokenize
from training.distill_add import decode, one_step_x0
from training.export import import_weights
from training.judge import caption_accuracy
from training.one_step import caption_embeddings, load_student_beside
from training.sample_flow import flow_step
from training.text_unet import EMPTY_PROMPT

N, OTHER, B = int(os.environ.get("N", "256")), int(os.environ.get("OTHER", "512")), 64
ITERATIONS, UPDATES = int(os.environ.get("ITERATIONS", "15")), int(os.environ.get("UPDATES", "32"))
LRS = [float(lr) for lr in os.environ.get("LRS", "3e-6 1e-5").split()]
STUDENTS = {"eps (shipped)": (ROOT / "weights/bundled_turbo/unet", "eps"), "x0 (x0_convert c)": (ROOT / "runs/x0c/unet", "sample")}
torch.set_num_threads(2)
run = Path(tempfile.mkdtemp())
import_weights(ROOT / "weights", run)
parts = load_student_beside(run, ROOT / "weights/bundled_turbo/unet", None, torch.device("cpu"))
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


def sample_of(unet: torch.nn.Module, prediction: str, n: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if prediction == "eps":
        return one_step_x0(unet, n, t, parts.alpha_bar)
    return unet(n, torch.full((len(n),), 999, dtype=torch.long), encoder_hidden_states=t).sample.float()


@torch.no_grad()
def latents_of(unet: torch.nn.Module, prediction: str, n: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.cat([sample_of(unet, prediction, n[i : i + B], t[i : i + B]) for i in range(0, len(n), B)])


for name, (folder, prediction) in STUDENTS.items():
    start = UNet2DConditionModel.from_pretrained(folder).float().eval()
    x0 = latents_of(start, prediction, noise, text)
    x = x0.clone()
    with torch.no_grad():
        for _ in range(ITERATIONS):
            flow_step(parts, x, list(text.split(B)), empty, gen, (20, 980), 6.0, 0.01, draws=4)
    line = x - x0
    print(f"{name}: {N} captions: student {accuracy(x0, captions):.3f}, targets {accuracy(x, captions):.3f} "
          f"(mean |x - x0| {line.abs().mean():.4f}); {OTHER} other captions: student "
          f"{accuracy(latents_of(start, prediction, noise_other, text_other), others):.3f}", flush=True)

    for lr in LRS:
        student = copy.deepcopy(start).train()
        params = list(student.parameters())
        for p in student.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        for _ in range(UPDATES):
            opt.zero_grad(set_to_none=True)
            for i in range(0, N, B):
                out = sample_of(student, prediction, noise[i : i + B], text[i : i + B])
                (((out - x[i : i + B]) ** 2).mean() * (len(out) / N)).backward()
            opt.step()
        student.eval()
        after = latents_of(student, prediction, noise, text)
        move = after - x0
        along = (move * line).flatten(1).sum(1) / line.pow(2).flatten(1).sum(1).clamp(min=1e-12)
        part_along = along.view(-1, 1, 1, 1) * line
        part_off = move - part_along
        print(f"{name} lr {lr:g}: {sum(p.numel() for p in params) / 1e6:.2f}M weights; trained captions {accuracy(after, captions):.3f}; "
              f"along its line {accuracy(x0 + part_along, captions):.3f} (mean fraction {along.mean():.2f}), off it "
              f"{accuracy(x0 + part_off, captions):.3f} (|off| / |along| {part_off.norm() / part_along.norm().clamp(min=1e-12):.2f}); "
              f"other captions {accuracy(latents_of(student, prediction, noise_other, text_other), others):.3f}", flush=True)
