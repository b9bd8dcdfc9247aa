"""Session 36, CPU: the reward model (training.reward) beside the judge on the shipped student's samples, and the
student's samples moved along the reward's gradient with no weights in between (as training.sample_flow does with DMD's).

    python training/results/session36/reward_probe.py RUN agree
    python training/results/session36/reward_probe.py RUN flow STEP aug|plain SIGMA DRAWS

RUN holds the imported weights (training.export --import) and the reward model (python -m training.reward --out RUN).
flow: 20 iterations; each moves every latent by STEP x its reward gradient scaled to unit mean |grad| per sample, the
gradient of P(caption holds) averaged over DRAWS decodes of the latent plus SIGMA x fresh noise (randomised smoothing),
each image augmented as the judge's renders ("aug"). Printed: iteration, (judge accuracy, three-object part), the
reward model's mean P(caption holds), mean |x - x_start|.
"""
import sys
from pathlib import Path

import torch

from training.distill_add import decode
from training.judge import augment, detect, score_caption
from training.one_step import judged, load_student_beside, seen_samples
from training.reward import caption_reward, load_reward

torch.set_num_threads(2)
run = Path(sys.argv[1])
parts = load_student_beside(run, Path("weights/bundled_turbo/unet"), None, torch.device("cpu"))
reward = load_reward(run, torch.device("cpu"))

if sys.argv[2] == "agree":
    s = seen_samples(parts, 512, 64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = decode(parts.vae, s.x, parts.scaling).clamp(0, 1)
        det, _ = detect(parts.judge, images)
        judge_ok = torch.tensor([float(bool(score_caption(d, c)["caption"])) for d, c in zip(det, s.captions)])
        p = torch.cat([caption_reward(reward, images[i:i+64], s.captions[i:i+64]).exp() for i in range(0, 512, 64)])
    rm_ok = (p > 0.5).float()
    print("judge acc", judge_ok.mean().item(), "reward acc", rm_ok.mean().item(), "agree", (judge_ok == rm_ok).float().mean().item(), "mean p", p.mean().item())
    print("p | judge right", p[judge_ok == 1].mean().item(), "p | judge wrong", p[judge_ok == 0].mean().item())
    sys.exit()
s = seen_samples(parts, 256, 64, torch.Generator().manual_seed(0))
step, use_aug, sigma, draws = float(sys.argv[3]), sys.argv[4] == "aug", float(sys.argv[5]), int(sys.argv[6])
x = s.x.clone()
gen = torch.Generator().manual_seed(1)


def rew(x):
    with torch.no_grad():
        return torch.cat([caption_reward(reward, decode(parts.vae, x[i:i+64], parts.scaling).clamp(0, 1), s.captions[i:i+64]).exp()
                          for i in range(0, 256, 64)]).mean().item()


print(0, judged(parts, x, s), rew(x), 0.0, flush=True)
for it in range(1, 21):
    grads = []
    for i in range(0, 256, 64):
        xi = x[i:i+64].clone().requires_grad_(True)
        for _ in range(draws):
            img = decode(parts.vae, xi + sigma * torch.randn(xi.shape, generator=gen), parts.scaling).clamp(0, 1)
            if use_aug:
                img = augment(img, gen)
            caption_reward(reward, img, s.captions[i:i+64]).exp().sum().backward()
        g = xi.grad
        grads.append(g / g.abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12))
    x = x + step * torch.cat(grads)
    if it % 5 == 0:
        print(it, judged(parts, x, s), rew(x), (x - s.x).abs().mean().item(), flush=True)
