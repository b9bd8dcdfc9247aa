"""Session 29's CPU checks (a record, not a module): why does the one-step student not take up the gain of its samples
moved along DMD's gradient? On session 27's 512 moved samples (`training/results/call27/flow_regress.py`'s cache in
runs/flowreg: the shipped student's samples x0 and their moved targets x, judged 0.781 -> 0.824):
  1. the judge's accuracy along the straight line x0 + alpha (x - x0): is the gain all-or-nothing per sample?
  2. the output change of one sign step of every weight in a group (what an Adam step does at lr EPS), per group;
  3. two passes of call 27's regression (AdamW lr 3e-6, batch 32): the per-sample distance to the targets and the
     per-sample move of the output, in quantiles (does the fit move every sample a little, or a few a lot?).

    python training/results/call29/flow_probe.py   # ~5 minutes on this repo's 2 CPU cores (output: flow_probe.txt)
"""

import copy
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
after = outputs(regressed.eval())
print("   per-sample MSE to the targets, q50 / q90 / q99 / max: start", quantiles(((before - x) ** 2).flatten(1).mean(1)),
      "after", quantiles(((after - x) ** 2).flatten(1).mean(1)))
print("   per-sample move of the output:", quantiles(((after - before) ** 2).flatten(1).mean(1)))
with torch.no_grad():
    print(f"   accuracy after: {caption_accuracy(judge, decode(vae, after, scaling).clamp(0, 1), captions)[0]['caption']:.3f}")
# the move split into its part along each sample's line x0 -> x and the rest, each judged on its own
line = x - before
along = ((after - before) * line).flatten(1).sum(1) / (line**2).flatten(1).sum(1)
on_line = before + along.view(-1, 1, 1, 1) * line
print("   the move along the line (alpha per sample), q50 / q90 / q99 / max:", quantiles(along),
      f"mean {along.mean():.3f}")
print("   the rest of the move (MSE), q50 / q90 / q99 / max:", quantiles(((after - on_line) ** 2).flatten(1).mean(1)))
with torch.no_grad():
    for label, latents in (("the part along the line alone", on_line), ("the rest alone", before + after - on_line)):
        images = decode(vae, latents, scaling).clamp(0, 1)
        print(f"   accuracy of {label}: {caption_accuracy(judge, images, captions)[0]['caption']:.3f}")
