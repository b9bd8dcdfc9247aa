"""Session 29's CPU checks (a record, not a module): why does the one-step student not take up the gain of its samples
moved along DMD's gradient? On session 27's 512 moved samples (`training/results/call27/flow_regress.py`'s cache in
runs/flowreg: the shipped student's samples x0 and their moved targets x, judged 0.781 -> 0.824):
  1. the judge's accuracy along the straight line x0 + alpha (x - x0): is the gain all-or-nothing per sample?
  2. the output change of one sign step of every weight in a group (what an Adam step does at lr EPS), per group;
  3. two passes of call 27's regression (AdamW lr 3e-6, batch 32): the per-sample distance to the targets and the
     per-sample move of the output, in quantiles (does the fit move every sample a little, or a few a lot?), and the
     move split into its part along each sample's line x0 -> x and the rest, each judged alone.
FULL=1 in the environment instead: UPDATES full-batch updates (all 512 samples each) with OPT (adamw, or sgd with
momentum 0.9) at LR, split and judged the same way, and the student judged on 256 other captions before and after.

    python training/results/call29/flow_probe.py   # ~5 minutes on this repo's 2 CPU cores (output: flow_probe.txt)
    FULL=1 OPT=adamw LR=3e-6 UPDATES=32 python training/results/call29/flow_probe.py   # ~15 minutes (flow_full_batch.txt)
"""

import copy
import os
import tempfile
from pathlib import Path

import torch

from training.analysis import ROOT
from training.checkpoint import clipped_step
from training.data import sample_scenes, tokenize
from training.distill_add import decode, one_step_x0
from training.export import import_weights
from training.judge import caption_accuracy
from training.one_step import load_student_beside

N, B, EPS = 512, 64, 1e-4
QUANTILES = torch.tensor([0.5, 0.9, 0.99, 1.0])
torch.set_num_threads(2)
run = Path(tempfile.mkdtemp())
import_weights(ROOT / "weights", run)
parts = load_student_beside(run, ROOT / "weights/bundled_turbo/unet", ROOT / "runs/critic27", torch.device("cpu"))
teacher, vae, judge, scaling, alpha_bar, student = parts[:6]
gen = torch.Generator().manual_seed(1)  # flow_regress's draws: the same noise and captions as its cache
captions = [s.caption for s in sample_scenes(777, N, "train")]
noise = torch.randn((N, 4, 16, 16), generator=gen)
with torch.no_grad():
    text = torch.cat([teacher.text_encoder(tokenize([c.text for c in captions[i : i + B]])).last_hidden_state for i in range(0, N, B)])
cached = torch.load(ROOT / "runs" / "flowreg" / "targets_512_8_0.01.pt")
x, x0 = cached["x"], cached["x0"]


def quantiles(v: torch.Tensor) -> str:
    return " / ".join(f"{q:.4f}" for q in v.quantile(QUANTILES).tolist())


@torch.no_grad()
def outputs(unet: torch.nn.Module, rows: slice = slice(None)) -> torch.Tensor:
    return torch.cat([one_step_x0(unet, noise[rows][i : i + B], text[rows][i : i + B], alpha_bar) for i in range(0, len(noise[rows]), B)])


def split_move(before: torch.Tensor, after: torch.Tensor) -> None:
    """The move before -> after: per-sample distances, its part along each sample's line x0 -> x and the rest, judged."""
    print("   per-sample MSE to the targets, q50 / q90 / q99 / max: start", quantiles(((before - x) ** 2).flatten(1).mean(1)),
          "after", quantiles(((after - x) ** 2).flatten(1).mean(1)))
    print("   per-sample move of the output:", quantiles(((after - before) ** 2).flatten(1).mean(1)))
    line = x - before
    along = ((after - before) * line).flatten(1).sum(1) / (line**2).flatten(1).sum(1)
    on_line = before + along.view(-1, 1, 1, 1) * line
    print("   the move along the line (alpha per sample), q50 / q90 / q99 / max:", quantiles(along), f"mean {along.mean():.3f}")
    print("   the rest of the move (MSE), q50 / q90 / q99 / max:", quantiles(((after - on_line) ** 2).flatten(1).mean(1)))
    with torch.no_grad():
        for label, latents in (("after", after), ("the part along the line alone", on_line), ("the rest alone", before + after - on_line)):
            images = decode(vae, latents, scaling).clamp(0, 1)
            print(f"   accuracy of {label}: {caption_accuracy(judge, images, captions)[0]['caption']:.3f}", flush=True)


if os.environ.get("FULL"):
    updates, lr = int(os.environ.get("UPDATES", "32")), float(os.environ.get("LR", "3e-6"))
    regressed = copy.deepcopy(student).train().requires_grad_(True)
    sgd = os.environ.get("OPT", "adamw") == "sgd"
    opt = torch.optim.SGD(regressed.parameters(), lr=lr, momentum=0.9) if sgd else torch.optim.AdamW(regressed.parameters(), lr=lr, weight_decay=0.0)
    print(f"full-batch regression: {updates} updates, {'SGD (momentum 0.9)' if sgd else 'AdamW'} at lr {lr:g}")
    before = outputs(regressed)
    for _ in range(updates):
        opt.zero_grad(set_to_none=True)
        for rows in torch.arange(N).split(32):
            (((one_step_x0(regressed, noise[rows], text[rows], alpha_bar) - x[rows]) ** 2).mean() / (N // 32)).backward()
        torch.nn.utils.clip_grad_norm_(regressed.parameters(), 1.0)
        opt.step()
    split_move(before, outputs(regressed.eval()))
    others = [s.caption for s in sample_scenes(4343, 256, "train")]
    other_noise = torch.randn((256, 4, 16, 16), generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        other_text = teacher.text_encoder(tokenize([c.text for c in others])).last_hidden_state
        for label, unet in (("start", student), ("regressed", regressed)):
            out = torch.cat([one_step_x0(unet, other_noise[i : i + B], other_text[i : i + B], alpha_bar) for i in range(0, 256, B)])
            print(f"   256 other captions, {label}: {caption_accuracy(judge, decode(vae, out, scaling).clamp(0, 1), others)[0]['caption']:.3f}")
    raise SystemExit


print("1. accuracy along x0 + alpha (x - x0)")
with torch.no_grad():
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25):
        images = decode(vae, x0 + alpha * (x - x0), scaling).clamp(0, 1)
        print(f"   alpha {alpha}: {caption_accuracy(judge, images, captions)[0]['caption']:.3f}", flush=True)


def group(name: str) -> str:
    kind = "bias" if name.endswith("bias") else "weight"
    for part, label in (("norm", "norm"), ("conv_in", "conv_in"), ("conv_out", "conv_out"), ("time_emb", "time_emb")):
        if part in name:
            return f"{label}/{kind}"
    if any(part in name for part in ("attn", "proj_in", "proj_out", ".ff.")):
        return f"attention/{kind}"
    return f"{'resnet' if 'resnets' in name else 'other'}/{kind}"


print(f"2. one sign step of {EPS:g} per weight in a group: mean output MSE on 128 samples")
base = outputs(student, slice(0, 128))
groups: dict[str, list[str]] = {}
for name, _ in student.named_parameters():
    groups.setdefault(group(name), []).append(name)
torch.manual_seed(0)
for label in [*sorted(groups), "all"]:
    moved = copy.deepcopy(student)
    params = dict(moved.named_parameters())
    names = [n for names in groups.values() for n in names] if label == "all" else groups[label]
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.sign(torch.randn_like(params[n])) * EPS)
    change = ((outputs(moved, slice(0, 128)) - base) ** 2).mean().item()
    print(f"   {label:18s} {sum(params[n].numel() for n in names):9,d} weights: {change:.2e}", flush=True)

print("3. two passes of AdamW (lr 3e-6, batch 32) onto the targets")
regressed = copy.deepcopy(student).train().requires_grad_(True)
opt = torch.optim.AdamW(regressed.parameters(), lr=3e-6, weight_decay=0.0)
order = torch.Generator().manual_seed(2)
before = outputs(regressed)
for _ in range(2):
    for rows in torch.randperm(N, generator=order).split(32):
        loss = ((one_step_x0(regressed, noise[rows], text[rows], alpha_bar) - x[rows]) ** 2).mean()
        clipped_step(opt, loss, regressed.parameters())
split_move(before, outputs(regressed.eval()))
