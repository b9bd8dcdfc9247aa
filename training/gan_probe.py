"""How well can DMD2's GAN classifier tell real renders from the one-step student's samples, by what it reads?

The classifier of training.distill_dmd reads the fake score UNet's features of a noised sample. In the GPU runs
the mid-block classifier ("mid") separated real from fake at only 0.65-0.73, so its term carried little signal.
This trains each classifier kind alone for --steps steps of --batch real + --batch fake samples, on frozen features
(the teacher's UNet, as the fake score is at the start of a run; the shipped one-step student's samples as the fake
side; real = VAE latents of fresh renders of the same captions, both noised at the same random t), and reports
its accuracy on fresh held-out batches, overall and by noise level. CPU, fp32.

--mismatch W (distill_dmd's --mismatch-weight): the classifier also learns real renders under a hard-negative caption
(training.data.hard_negative: one shape, colour, stated size or side / relation changed) as fake, at weight W. Then it
also reports "matching" (matched vs mismatched real, by t band) and, whatever W, "judge_auc": over the student's
samples, how often its logit ranks one the judge reads as right (whole caption) above one it reads as wrong, at
t < 500. A GAN term can only pull the student toward the captions where that is above 0.5.

--critic DIR: a run's critic (distill_dmd's critic_fp16: fake score and classifier) measured as it is, with no training
(--steps 0): the features are its fake score's, the logits its classifier's.

    python -m training.gan_probe [--steps 300] [--batch 32] [--kinds mid multi] [--mismatch W] [--critic DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from training.analysis import ROOT
from training.checkpoint import load_weights
from training.data import hard_negative, render, sample_scenes, scenes_to_batch, tokenize
from training.diffusion import add_noise, alphas_cumprod
from training.distill_add import decode, one_step_x0
from training.distill_dmd import CLASSIFIERS, critic_classifier, unet_with_mid
from training.distill_lcm import teacher_scaling
from training.export import import_weights
from training.judge import detect, score_caption
from training.one_step import load_judge
from training.text_unet import encode_latents, load_frozen_teacher, load_frozen_vae

T_BANDS = ((0, 250), (250, 500), (500, 750), (750, 1000))


class Samples:
    """Noised real and student latents with their captions' embeddings, for one classifier to read."""

    def __init__(self, run: Path, student: Path, seed: int) -> None:
        self.teacher = load_frozen_teacher(run, torch.device("cpu"))
        self.vae = load_frozen_vae(run, torch.device("cpu"))
        self.scaling = teacher_scaling(run)
        self.student = UNet2DConditionModel.from_pretrained(student).float().eval().requires_grad_(False)
        self.alpha_bar = alphas_cumprod(torch.device("cpu"))
        self.gen = torch.Generator().manual_seed(seed)
        self.judge = load_judge(run, torch.device("cpu"))
        self.seed = seed

    @torch.no_grad()
    def batch(self, size: int, t: torch.Tensor | None = None) -> Noised:
        """Noised real and fake latents, t, the captions' and their hard negatives' embeddings, and whether the judge
        reads each clean fake sample as its caption, for `size` fresh captions."""
        self.seed += 1
        scenes = sample_scenes(self.seed, size, "train")
        rng = random.Random(f"negative:{self.seed}")
        negatives = [hard_negative(s.caption, rng).text for s in scenes]
        text = self.teacher.text_encoder(tokenize([s.caption.text for s in scenes])).last_hidden_state
        negative = self.teacher.text_encoder(tokenize(negatives)).last_hidden_state
        images = render(scenes_to_batch(scenes), self.gen)
        real = encode_latents(self.vae, images, self.scaling, None)  # the posterior mean, as distill_dmd's real side
        noise = torch.randn(real.shape, generator=self.gen)
        fake = one_step_x0(self.student, noise, text, self.alpha_bar)
        detected, _ = detect(self.judge, decode(self.vae, fake, self.scaling).clamp(0, 1))
        right = torch.tensor([bool(score_caption(d, s.caption)["caption"]) for d, s in zip(detected, scenes)])
        t = torch.randint(0, 1000, (size,), generator=self.gen) if t is None else t
        noised = [add_noise(x, torch.randn(x.shape, generator=self.gen), t, self.alpha_bar) for x in (real, fake)]
        return Noised(noised[0], noised[1], t, text, negative, right)


class Noised(NamedTuple):
    real: torch.Tensor
    fake: torch.Tensor
    t: torch.Tensor
    text: torch.Tensor
    negative: torch.Tensor  # the hard negatives' embeddings
    right: torch.Tensor  # the judge reads the clean fake sample as its caption


def ranking_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting half (nan without both)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def probe(samples: Samples, kind: str, steps: int, batch: int, eval_batches: int = 8, mismatch: float = 0.0,
          critic: Path | None = None) -> dict[str, float]:
    """Train a `kind` classifier alone on frozen teacher-UNet features (or take a run's critic: its fake score's
    features and its classifier); held-out accuracy overall and per t band."""
    torch.manual_seed(0)
    classifier = CLASSIFIERS[kind]()
    scales = classifier.scales  # what the classifier reads: the mid block, or also the down-block maps
    unet = samples.teacher.unet  # frozen (load_frozen_teacher)
    if critic is not None:
        unet = copy.deepcopy(unet)
        if not load_weights(unet, critic / "fake_score.safetensors"):
            raise FileNotFoundError(f"--critic {critic}: no fake_score.safetensors")
        classifier = critic_classifier(critic, kind)
    opt = torch.optim.AdamW(classifier.parameters(), lr=1e-4)

    def logits(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, feature = unet_with_mid(unet, x, t, text, mid_only=True, scales=scales)
        return classifier(feature)

    for _ in range(steps):
        b = samples.batch(batch)
        loss = F.softplus(-logits(b.real, b.t, b.text)).mean() + F.softplus(logits(b.fake, b.t, b.text)).mean()
        if mismatch > 0:
            loss = loss + mismatch * F.softplus(logits(b.real, b.t, b.negative)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    right: list[torch.Tensor] = []
    times: list[torch.Tensor] = []
    matched: list[torch.Tensor] = []
    fake_logits: list[torch.Tensor] = []
    judged: list[torch.Tensor] = []
    fake_t: list[torch.Tensor] = []
    with torch.no_grad():
        for _ in range(eval_batches):
            b = samples.batch(batch)
            real_logit, fake_logit = logits(b.real, b.t, b.text), logits(b.fake, b.t, b.text)
            right += [real_logit > 0, fake_logit < 0]
            times += [b.t, b.t]
            matched.append(real_logit > logits(b.real, b.t, b.negative))
            fake_logits.append(fake_logit)
            judged.append(b.right)
            fake_t.append(b.t)
    hits, t_all = torch.cat(right).float(), torch.cat(times)
    result = {"accuracy": hits.mean().item()}
    for lo, hi in T_BANDS:
        band = (t_all >= lo) & (t_all < hi)
        result[f"t {lo}-{hi}"] = hits[band].mean().item() if band.any() else float("nan")
    pairs, t_pair = torch.cat(matched).float(), torch.cat(fake_t)
    result["matching"] = pairs.mean().item()
    for lo, hi in T_BANDS:
        band = (t_pair >= lo) & (t_pair < hi)
        result[f"matching t {lo}-{hi}"] = pairs[band].mean().item() if band.any() else float("nan")
    low = t_pair < 500
    result["judge_auc"] = ranking_auc(torch.cat(fake_logits)[low], torch.cat(judged)[low])
    result["student_right"] = torch.cat(judged).float().mean().item()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--kinds", nargs="+", choices=tuple(CLASSIFIERS), default=list(CLASSIFIERS))
    parser.add_argument("--student", type=Path, default=ROOT / "weights" / "bundled_turbo" / "unet")
    parser.add_argument("--mismatch", type=float, default=0.0, help="weight of real renders under hard-negative captions as fake")
    parser.add_argument("--critic", type=Path, default=None, help="a run's critic_fp16 folder, measured without training")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        import_weights(ROOT / "weights", run)
        result = {"steps": args.steps, "batch": args.batch, "student": str(args.student), "device": "cpu",
                  "mismatch": args.mismatch, "critic": str(args.critic) if args.critic else None}
        for kind in args.kinds:
            result[kind] = probe(Samples(run, args.student, seed=4000), kind, args.steps, args.batch, mismatch=args.mismatch,
                                 critic=args.critic)
            print(kind, json.dumps(result[kind]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
