# Diagnostic for the ADD student (see disc_probe.txt): run from the repository root.
"""Can the ADD discriminator separate real renders from the shipped one-step student's images when
trained alone (student frozen)? CPU, batch 32."""
import time, torch
from pathlib import Path
from diffusers import UNet2DConditionModel
torch.manual_seed(0); torch.set_num_threads(2)
from training.distill_add import JudgeDiscriminator, judge_features, add_generate
from training.models import Judge
from training.checkpoint import load_weights
from training.data import render, sample_scenes, scenes_to_batch, tokenize
from transformers import CLIPTextModel
from diffusers import AutoencoderKL
dev = torch.device("cpu")
te = CLIPTextModel.from_pretrained("weights/bundled/text_encoder").float().eval()
vae = AutoencoderKL.from_pretrained("weights/bundled/vae").float().eval()
scaling = vae.config.scaling_factor
student = UNet2DConditionModel.from_pretrained("weights/bundled_turbo/unet").float().eval()
judge = Judge(); load_weights(judge, Path("weights/judge/judge.safetensors")); judge.eval().requires_grad_(False)
disc = JudgeDiscriminator().train()
opt = torch.optim.AdamW(disc.parameters(), lr=2e-4, betas=(0.0, 0.99), weight_decay=0.0)
gen = torch.Generator().manual_seed(0)
t0 = time.time()
for step in range(1, 151):
    scenes = sample_scenes(1000 + step, 32, "train")
    texts = [s.caption.text for s in scenes]
    with torch.no_grad():
        real = render(scenes_to_batch(scenes), gen)
        fake = add_generate(student, te, vae, scaling, texts, step, dev)
        pooled = te(tokenize(texts)).pooler_output
        rf, ff = judge_features(judge, real), judge_features(judge, fake)
    d_real, d_fake = disc(rf, pooled), disc(ff, pooled)
    loss = torch.stack([torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(d_real, d_fake)]).sum()
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 15 == 0:
        acc = [((r.mean((1, 2)) > 0).float().mean().item() + (f.mean((1, 2)) < 0).float().mean().item()) / 2 for r, f in zip(d_real, d_fake)]
        print(f"step {step} hinge {loss.item():.3f} per-head acc {[round(a, 2) for a in acc]} {time.time() - t0:.0f}s", flush=True)
