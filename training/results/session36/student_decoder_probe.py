"""Session 36, CPU: can a VAE decoder of the student's own take up the teacher's re-solve of its samples?

N seen captions' one-step samples x are re-noised to S with the student's own noise and re-solved by the guided teacher
(training.distill_refine.refine, DDIM STEPS); a copy of the VAE's decoder is regressed (L2 on pixels, AdamW LR, batch
32, ITERS updates) from x onto the re-solved latents' KL-decoded images, and the judge scores the student's samples on
256 fresh seen + 256 held-out captions with it against the shipped decoder (paired: accuracy, difference, its
standard error), every 100 updates.

    python training/results/session36/student_decoder_probe.py N S STEPS LR ITERS    # run: 2048 300 8 1e-4 600
RUN = runs/w (training.export --import weights runs/w).
"""
import copy
import sys
import time
from pathlib import Path

import torch

from training.data import sample_scenes, tokenize
from training.distill_add import decode
from training.distill_refine import refine
from training.judge import detect, score_caption
from training.one_step import caption_embeddings, load_student_beside, student_latents
from training.text_unet import EMPTY_PROMPT

torch.set_num_threads(2)
N, S, STEPS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lr, iters, batch = float(sys.argv[4]), int(sys.argv[5]), 32
parts = load_student_beside(Path("runs/w"), Path("weights/bundled_turbo/unet"), None, torch.device("cpu"))
with torch.no_grad():
    empty = parts.teacher.text_encoder(tokenize([EMPTY_PROMPT])).last_hidden_state
def latents(captions, seed):
    noise = torch.randn((len(captions), 4, 16, 16), generator=torch.Generator().manual_seed(seed))
    text = caption_embeddings(parts, captions, 64)
    return noise, text, student_latents(parts.student, parts, noise, text, 64)
cache = Path(f"runs/dec_data_{N}_{S}_{STEPS}.pt")
t0 = time.time()
if cache.exists():
    data = torch.load(cache)
else:
    caps = [s.caption for s in sample_scenes(3131, N, "train")]
    noise, text, x = latents(caps, 1)
    with torch.no_grad():
        y = torch.cat([refine(parts.teacher, x[i:i+64], noise[i:i+64], torch.cat((text[i:i+64], empty.expand(len(text[i:i+64]), -1, -1))), S, STEPS, parts.alpha_bar) for i in range(0, N, 64)])
        target = torch.cat([decode(parts.vae, y[i:i+64], parts.scaling).clamp(0, 1) for i in range(0, N, 64)])
    data = {"x": x, "target": target, "captions": caps}
    ev = {}
    for split, seed in (("train", 3232), ("heldout", 3233)):
        c = [s.caption for s in sample_scenes(seed, 256, split)]
        ev[split] = (c, latents(c, 2)[2])
    data["eval"] = ev
    torch.save(data, cache)
    print("data", round(time.time() - t0), flush=True)
def right(vae, x, captions):
    with torch.no_grad():
        imgs = torch.cat([decode(vae, x[i:i+64], parts.scaling).clamp(0, 1) for i in range(0, len(x), 64)])
        det, _ = detect(parts.judge, imgs)
    return torch.tensor([float(bool(score_caption(d, c)["caption"])) for d, c in zip(det, captions)])
with torch.no_grad():
    det, _ = detect(parts.judge, data["target"])
print("targets acc", sum(bool(score_caption(d, c)["caption"]) for d, c in zip(det, data["captions"])) / N,
      "student acc (train set)", right(parts.vae, data["x"], data["captions"]).mean().item(), flush=True)
base = {k: right(parts.vae, v[1], v[0]) for k, v in data["eval"].items()}
print("base", {k: v.mean().item() for k, v in base.items()}, flush=True)
vae = copy.deepcopy(parts.vae)
params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
for p in params: p.requires_grad_(True)
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
gen = torch.Generator().manual_seed(9)
for it in range(1, iters + 1):
    rows = torch.randint(0, N, (batch,), generator=gen)
    loss = (decode(vae, data["x"][rows], parts.scaling) - data["target"][rows]).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if it % 100 == 0 or it == iters:
        now = {k: right(vae, v[1], v[0]) for k, v in data["eval"].items()}
        msg = {k: (round(now[k].mean().item(), 4), round((now[k] - base[k]).mean().item(), 4), round(((now[k] - base[k]).std() / 16).item(), 4)) for k in now}
        print(it, round(loss.item(), 5), msg, round(time.time() - t0), flush=True)
