"""Adversarial diffusion distillation (ADD) of the bundled UNet into a one-step student.

Sauer et al. 2023, sec. 3: the student, initialised from the teacher UNet, maps x_s at a few
fixed student timesteps s to an image x0_hat in one evaluation. Its loss is
    L = L_adv^G(x0_hat, c) + lambda * L_distill(x0_hat, x0_teacher),   lambda = 2.5,
- L_adv: hinge loss of a discriminator made of trainable heads on FROZEN features of the judge
  (training.models.Judge, four feature maps at 64/32/16/8 px) of the decoded 64 px image (the
  VAE decoder is small: the gradient goes through it), each head a projection discriminator
  (Miyato & Koyama 2018) conditioned on the frozen text encoder's pooled caption embedding;
  real samples are renders of the same captions from training.data;
- L_distill: the student sample re-noised at a random t, the teacher's guided (w = 4) x0 from
  it as a stop-gradient target, squared error weighted by c(t) = sqrt(alpha_bar_t) (ADD's
  "exponential" weighting), in scaled latent space.
The served step is s = 999 from pure noise (the onestep / turbo sampler feeds the UNet
N(0, 1) noise at t = 999, so training does too: no signal leaks from a real image). With
probability 1 - TOP_PROB a row instead starts from a real latent noised at s in
{749, 499, 249}, as ADD does, so 2-4 step sampling is also trained.

Added to ADD's two losses, for the short budget (a few thousand steps): a regression of the
student's one-step x0 on the teacher's own deterministic sample from the same noise (guided
DDIM, w = 4, ODE_STEPS steps from t = 999; Luhman & Luhman 2021), over a bank of (caption, noise,
teacher latent) triples built at the start of the run. The t = 999 rows draw their caption and
noise from the bank, so the one map the student must learn is given directly; the adversarial
term keeps it from settling on the blurred average of that map.

The student starts from the LCM student of the same teacher when RUN holds one
(lcm/ema_student.safetensors, training.distill_lcm): it already draws in one step (caption
accuracy 0.46 vs the teacher's 0.74 at DDIM 25 on an H200, call 5b), so ADD refines it (lr 2e-5);
the teacher itself at t = 999 only gives the blurred conditional mean. Without one it starts
from the teacher (ADD, sec. 4; lr 1e-4): a run from the teacher for 280 s (983 steps, shared
GPU) reached only 0.17.

    python -m training.distill_add --out RUN --seconds S [--device cuda] [--batch B] [--lr LR]
        [--init auto|lcm|teacher] [--bank N] [--bank-file FILE]
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from training.checkpoint import (
    EMA,
    Deadline,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_parser,
)
from training.data import render, sample_scenes, scenes_to_batch, tokenize
from training.diffusion import add_noise, alphas_cumprod
from training.distill_lcm import teacher_scaling
from training.judge import caption_accuracy
from training.models import TEXT_HIDDEN, Judge
from training.text_unet import EMPTY_PROMPT, TextUNet, load_frozen_teacher, load_frozen_vae

STAGE = "add"
STUDENT_TIMESTEPS = (999, 749, 499, 249)
TOP_PROB = 0.75  # share of rows trained at the served step s = 999
GUIDANCE = 4.0
DISTILL_WEIGHT = 2.5  # lambda (ADD, sec. 4)
EMA_DECAY = 0.995
ODE_STEPS = 10  # teacher DDIM steps for the regression bank (DDIM 10 ~ DDIM 25 in judge accuracy)
ODE_WEIGHT = 1.0
BANK_SHARE = 0.15  # at most this share of the budget builds the bank
TAPS = (0, 2, 4, 6)  # indices in Judge.body whose outputs feed the discriminator heads
HEAD_WIDTH = 64


def judge_features(judge: Judge, images: Tensor) -> list[Tensor]:
    """The judge's feature maps at TAPS for images (B, 3, 64, 64) in [0, 1] (gradients flow to images)."""
    h = images * 2 - 1  # as Judge.forward
    maps = []
    for i, layer in enumerate(judge.body):
        h = layer(h)
        if i in TAPS:
            maps.append(h)
    return maps


class ProjectionHead(nn.Module):
    """Per-location logits from one feature map: out(f) + <f, P c> / sqrt(width) (projection discriminator)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, HEAD_WIDTH, 3, stride=stride, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, padding=1)), nn.LeakyReLU(0.2),
        )
        self.out = spectral_norm(nn.Conv2d(HEAD_WIDTH, 1, 1))
        self.project = spectral_norm(nn.Linear(TEXT_HIDDEN, HEAD_WIDTH))

    def forward(self, feature: Tensor, text: Tensor) -> Tensor:
        """feature (B, C, H, W), text (B, 128) pooled caption embedding -> logits (B, H', W')."""
        f = self.body(feature)
        cond = (f * self.project(text).view(*text.shape[:1], HEAD_WIDTH, 1, 1)).sum(1) / math.sqrt(HEAD_WIDTH)
        return self.out(f).squeeze(1) + cond


class JudgeDiscriminator(nn.Module):
    """Trainable heads over the frozen judge's feature maps (the judge itself is not a submodule:
    it is frozen, shared and never saved with the heads)."""

    CHANNELS = (48, 96, 192, 256)
    STRIDES = (4, 2, 1, 1)  # 64 and 32 px maps are pooled by the first conv to 16 px

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleList([ProjectionHead(c, s) for c, s in zip(self.CHANNELS, self.STRIDES)])

    def forward(self, features: list[Tensor], text: Tensor) -> list[Tensor]:
        """One logit map per head."""
        return [head(f.float(), text.float()) for head, f in zip(self.heads, features)]


def x0_from_eps(x: Tensor, eps: Tensor, t: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = (x_t - sqrt(1 - a) eps) / sqrt(a), float32."""
    a = alpha_bar[t].float().view(-1, 1, 1, 1)
    return (x.float() - (1 - a).sqrt() * eps.float()) / a.sqrt()


def decode(vae: AutoencoderKL, latents: Tensor, scaling: float) -> Tensor:
    """Scaled latents -> images in [0, 1] (unclamped, so the gradient survives out-of-range pixels)."""
    return (vae.decode(latents / scaling).sample.float() + 1) / 2


def one_step_x0(unet: UNet2DConditionModel, noise: Tensor, text: Tensor, alpha_bar: Tensor) -> Tensor:
    """The one-step student's latent sample: its x0 (fp32) from pure noise at the served timestep STUDENT_TIMESTEPS[0]."""
    t = torch.full((noise.shape[0],), STUDENT_TIMESTEPS[0], device=noise.device, dtype=torch.long)
    return x0_from_eps(noise, unet(noise, t, encoder_hidden_states=text).sample, t, alpha_bar)


@torch.no_grad()
def add_generate(unet: UNet2DConditionModel, text_encoder: nn.Module, vae: AutoencoderKL, scaling: float,
                 texts: list[str], seed: int, device: torch.device) -> Tensor:
    """One-step images (B, 3, 64, 64) in [0, 1]: x0 of the student at t = 999 from pure noise."""
    alpha_bar = alphas_cumprod(device)
    cuda = device.type == "cuda"
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn((len(texts), 4, 16, 16), generator=gen, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        text = text_encoder(tokenize(texts).to(device)).last_hidden_state
        x0 = one_step_x0(unet, noise, text, alpha_bar)
    return decode(vae, x0, scaling).clamp(0, 1)


@torch.no_grad()
def teacher_bank(teacher: TextUNet, tokens: Tensor, empty: Tensor, count: int, batch: int, seconds: float,
                 gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(pool rows (N,), noise (N, 4, 16, 16), teacher latents (N, 4, 16, 16) fp16): guided DDIM (eta 0,
    w = GUIDANCE) from x_999 = noise over ODE_STEPS evenly spaced timesteps 999, ..., for up to `count`
    triples or `seconds` of wall clock."""
    alpha_bar = alphas_cumprod(device)
    cuda = device.type == "cuda"
    deadline = Deadline(seconds)
    timesteps = [999 - i * (1000 // ODE_STEPS) for i in range(ODE_STEPS)]
    rows_out, noise_out, latent_out = [], [], []
    made = 0
    while made < count and (made == 0 or not deadline.passed()):
        n = min(batch, count - made)
        rows = torch.randint(0, len(tokens), (n,), generator=gen, device=device)
        noise = torch.randn((n, 4, 16, 16), generator=gen, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            text = teacher.text_encoder(torch.cat((tokens[rows], empty.expand(n, -1)))).last_hidden_state
        x = noise
        for i, t in enumerate(timesteps):
            tt = torch.full((n,), t, device=device, dtype=torch.long)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                eps_c, eps_u = teacher.unet(torch.cat((x, x)), torch.cat((tt, tt)), encoder_hidden_states=text).sample.float().chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            x0 = x0_from_eps(x, eps, tt, alpha_bar)
            a_next = float(alpha_bar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            x = a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps
        rows_out.append(rows)
        noise_out.append(noise.half())
        latent_out.append(x.half())
        made += n
    return torch.cat(rows_out), torch.cat(noise_out), torch.cat(latent_out)


def shared_bank(teacher: TextUNet, tokens: Tensor, empty: Tensor, pool_seed: int, count: int | None,
                bank_file: Path | None, seconds: float, gen: torch.Generator,
                device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The regression bank over the caption pool of `pool_seed` (teacher_bank's triples): read from
    `bank_file` when it exists (refused when built over another pool), else built (count, default
    65,536 on CUDA and 16 on CPU, within `seconds`) and saved there under a temporary name, then
    renamed, so runs side by side share one bank."""
    if bank_file is not None and bank_file.exists():
        saved = torch.load(bank_file, map_location=device)
        if int(saved["pool_seed"]) != pool_seed or int(saved["rows"].max()) >= len(tokens):
            raise ValueError(f"{bank_file} was built over another caption pool (seed {saved['pool_seed']})")
        return saved["rows"], saved["noise"], saved["latent"]
    cuda = device.type == "cuda"
    rows, noise, latent = teacher_bank(teacher, tokens, empty, count or (65_536 if cuda else 16), 1024 if cuda else 8,
                                       seconds, gen, device)
    if bank_file is not None:
        partial = bank_file.with_suffix(".partial")
        torch.save({"rows": rows, "noise": noise, "latent": latent, "pool_seed": pool_seed}, partial)
        partial.rename(bank_file)
    return rows, noise, latent


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float | None = None,
          disc_lr: float = 2e-4, pool_size: int = 60_000, eval_count: int = 256, init: str = "auto",
          bank_count: int | None = None, bank_file: Path | None = None, adv_weight: float = 1.0,
          distill_weight: float = DISTILL_WEIGHT, ode_weight: float = ODE_WEIGHT, beta1: float = 0.0,
          restart_from_ema: bool = False, init_unet: Path | None = None) -> dict[str, float]:
    """Distil (or resume) the one-step student for `seconds` of wall clock; returns its judge accuracy.

    init: "auto" (the LCM student of RUN when there is one, else the teacher), "lcm" or "teacher".
    bank_file: the regression bank is read from this file when it exists, else built and saved
    there (written to a temporary name, then renamed), so side-by-side runs share one bank.
    adv_weight / distill_weight / ode_weight weigh the three generator losses; beta1 is the
    generator's Adam beta1 (0 as in GAN practice, 0.9 when regression dominates);
    restart_from_ema resumes with the raw student set to its EMA (when the raw weights are the
    noisier of the two, as the call-6 runs showed). init_unet: a fresh run starts from this diffusers
    UNet folder (e.g. a shipped bundled_turbo/unet) instead of the LCM student or the teacher."""
    if init not in ("auto", "lcm", "teacher"):
        raise ValueError(f"init must be 'auto', 'lcm' or 'teacher', got {init!r}")
    deadline = Deadline(seconds)
    cuda = device.type == "cuda"
    batch = batch or (128 if cuda else 4)
    directory = out / STAGE
    teacher = load_frozen_teacher(out, device)
    scaling = teacher_scaling(out)
    judge = Judge().to(device)
    if not load_weights(judge, out / "judge" / "judge.safetensors"):
        raise FileNotFoundError(f"{out / 'judge' / 'judge.safetensors'} missing: the discriminator needs the judge")
    judge.requires_grad_(False).eval()
    vae = load_frozen_vae(out, device)

    student = copy.deepcopy(teacher.unet).train().requires_grad_(True)
    state = load_state(directory)
    if load_weights(student, directory / "student.safetensors"):
        init = str(state.metrics.get("init", "teacher"))
    elif init_unet is not None:
        student.load_state_dict(UNet2DConditionModel.from_pretrained(init_unet).float().state_dict())
        init = f"unet:{init_unet.parent.name}"
    elif init != "teacher" and load_weights(student, out / "lcm" / "ema_student.safetensors"):
        init = "lcm"  # an LCM student of this teacher already draws in one step: refine it
    elif init == "lcm":
        raise FileNotFoundError(f"{out / 'lcm' / 'ema_student.safetensors'} missing: init 'lcm' needs RUN's LCM student")
    else:
        init = "teacher"
    state.metrics["init"] = init  # type: ignore[assignment]
    # from scratch the one-step map must move far (1e-4); from the LCM student only be refined (2e-5)
    lr = lr or (1e-4 if init == "teacher" else 2e-5)
    initial = copy.deepcopy(student).eval().requires_grad_(False) if state.step == 0 else None
    ema_model = copy.deepcopy(student).eval().requires_grad_(False)
    load_weights(ema_model, directory / "ema_student.safetensors")
    if restart_from_ema and state.step > 0:
        student.load_state_dict(ema_model.state_dict())
        state.metrics["restarted_from_ema_at"] = state.step
    state.metrics.update({"adv_weight": adv_weight, "distill_weight": distill_weight, "ode_weight": ode_weight,
                          "beta1": beta1, "lr": lr})
    ema = EMA(ema_model, EMA_DECAY)
    disc = JudgeDiscriminator().to(device).train()
    load_weights(disc, directory / "discriminator.safetensors")
    ema.updates = state.step
    opt_g = torch.optim.AdamW(student.parameters(), lr=lr, betas=(beta1, 0.99), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=disc_lr, betas=(0.0, 0.99), weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(7000 + state.step)
    alpha_bar = alphas_cumprod(device)

    scenes = sample_scenes(300 + state.step, pool_size if cuda else 64, "train")
    pool = scenes_to_batch(scenes).to(device)
    tokens = tokenize([s.caption.text for s in scenes]).to(device)
    empty = tokenize([EMPTY_PROMPT]).to(device)
    top = torch.tensor(STUDENT_TIMESTEPS[0], device=device)
    lower = torch.tensor(STUDENT_TIMESTEPS[1:], device=device)

    bank_rows, bank_noise, bank_latent = shared_bank(teacher, tokens, empty, 300 + state.step, bank_count, bank_file,
                                                     BANK_SHARE * seconds, gen, device)
    state.metrics["bank_size"] = len(bank_rows)
    eval_reserve = 20.0 if cuda else 0.3 * seconds
    start_step = state.step
    while deadline.left() > eval_reserve:
        pick_bank = torch.randint(0, len(bank_rows), (batch,), generator=gen, device=device)
        rows = bank_rows[pick_bank]
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            real = render(pool.index(rows), gen)  # (B, 3, 64, 64) in [0, 1]
            real_latent = vae.encode(real * 2 - 1).latent_dist.mean.float() * scaling
            encoded = teacher.text_encoder(torch.cat((tokens[rows], empty.expand(batch, -1))))
            text_both = encoded.last_hidden_state
            text, pooled = text_both[:batch], encoded.pooler_output[:batch].float()
        # student input: pure noise at s = 999, or a real latent noised at a lower student step
        pick = torch.randint(0, len(lower), (batch,), generator=gen, device=device)
        at_top = torch.rand(batch, generator=gen, device=device) < TOP_PROB
        s = torch.where(at_top, top, lower[pick])
        top_rows = at_top.view(-1, 1, 1, 1)
        noise = torch.where(top_rows, bank_noise[pick_bank].float(), torch.randn(real_latent.shape, generator=gen, device=device))
        x_s = torch.where(top_rows, noise, add_noise(real_latent, noise, s, alpha_bar).float())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            x0_hat = x0_from_eps(x_s, student(x_s, s, encoder_hidden_states=text).sample, s, alpha_bar)
            fake = decode(vae, x0_hat, scaling)
            g_adv = -torch.stack([logit.mean() for logit in disc(judge_features(judge, fake), pooled)]).sum()

        # distillation target: teacher's guided x0 from the re-noised student sample (stop-gradient)
        t = torch.randint(20, 980, (batch,), generator=gen, device=device)
        x_t = add_noise(x0_hat.detach(), torch.randn(x0_hat.shape, generator=gen, device=device), t, alpha_bar).float()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            eps_c, eps_u = teacher.unet(torch.cat((x_t, x_t)), torch.cat((t, t)), encoder_hidden_states=text_both).sample.float().chunk(2)
            aim = x0_from_eps(x_t, eps_u + GUIDANCE * (eps_c - eps_u), t, alpha_bar)
        weight = alpha_bar[t].float().sqrt().view(-1, 1, 1, 1)
        distill = (weight * (x0_hat - aim) ** 2).mean()
        ode = ((x0_hat - bank_latent[pick_bank].float()) ** 2 * top_rows).sum() / (top_rows.sum() * x0_hat[0].numel()).clamp(min=1)
        loss_g = adv_weight * g_adv + distill_weight * distill + ode_weight * ode
        clipped_step(opt_g, loss_g, student.parameters())
        ema.update(student)

        # discriminator: hinge loss, real renders vs the (detached) student images, same captions
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            real_features = judge_features(judge, real)
            fake_features = judge_features(judge, fake.detach())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            d_real = disc(real_features, pooled)
            d_fake = disc(fake_features, pooled)
            loss_d = torch.stack([torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(d_real, d_fake)]).sum()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        state.step += 1
        if state.step % 10 == 0:
            state.log("distill", distill.item())
            state.log("ode_regression", ode.item())
            state.log("disc_hinge", loss_d.item())
            state.log("gen_adv+5", g_adv.item() + 5.0)  # shifted positive for the log-scale plot
    state.elapsed_s += deadline.elapsed()
    state.metrics["steps_this_run"] = state.step - start_step
    state.metrics["guidance"] = GUIDANCE
    ema.copy_to(ema_model)
    save_weights(student, directory / "student.safetensors")
    save_weights(ema_model, directory / "ema_student.safetensors")
    save_weights(disc, directory / "discriminator.safetensors")
    candidates = {"ema_student": ema_model, "student": student.eval()}
    metrics = _evaluate(candidates, teacher, vae, scaling, judge, eval_count if cuda else 4, device)
    if initial is not None:  # the starting point on the same captions, for the record (never exported)
        start = _evaluate({"init": initial}, teacher, vae, scaling, judge, eval_count if cuda else 4, device)
        metrics.update({k: v for k, v in start.items() if k != "export"})
    state.metrics.update(metrics)
    save_state(directory, state, "ADD: distillation L2, ODE regression, hinge losses (generator +5)")
    return metrics


def _evaluate(candidates: dict[str, UNet2DConditionModel], teacher: TextUNet, vae: AutoencoderKL, scaling: float,
              judge: Judge, count: int, device: torch.device) -> dict[str, float]:
    """One-step caption accuracy of each candidate on seen and held-out captions; `export` names the
    better on seen captions (what training.export_students ships)."""
    metrics: dict[str, float] = {}
    best, best_acc = "ema_student", -1.0
    for name, unet in candidates.items():
        for split, label in (("train", "seen"), ("heldout", "heldout")):
            captions = [s.caption for s in sample_scenes(12345, count, split)]
            images = add_generate(unet, teacher.text_encoder, vae, scaling, [c.text for c in captions], 99, device)
            acc, _ = caption_accuracy(judge, images, captions)
            metrics[f"{name}_add1_{label}_caption"] = acc["caption"]
            if label == "seen" and acc["caption"] > best_acc:
                best, best_acc = name, acc["caption"]
    metrics["export"] = best  # type: ignore[assignment]
    return metrics


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: 128 on GPU, 4 on CPU")
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-5 from the LCM student, 1e-4 from the teacher")
    parser.add_argument("--init", choices=("auto", "lcm", "teacher"), default="auto")
    parser.add_argument("--bank", type=int, default=None, help="regression bank size (default: 65536 on GPU, 16 on CPU)")
    parser.add_argument("--bank-file", type=Path, default=None, help="share the bank: read it here, or build and save it here")
    parser.add_argument("--adv-weight", type=float, default=1.0)
    parser.add_argument("--distill-weight", type=float, default=DISTILL_WEIGHT)
    parser.add_argument("--ode-weight", type=float, default=ODE_WEIGHT)
    parser.add_argument("--beta1", type=float, default=0.0, help="generator Adam beta1")
    parser.add_argument("--restart-from-ema", action="store_true", help="on resume, start the raw student from its EMA")
    parser.add_argument("--init-unet", type=Path, default=None, help="a fresh run starts from this diffusers UNet folder")
    args = parser.parse_args()
    print(STAGE, train(args.out, args.seconds, torch.device(args.device), batch=args.batch, lr=args.lr, init=args.init,
                       bank_count=args.bank, bank_file=args.bank_file, adv_weight=args.adv_weight,
                       distill_weight=args.distill_weight, ode_weight=args.ode_weight, beta1=args.beta1,
                       restart_from_ema=args.restart_from_ema, init_unet=args.init_unet), flush=True)


if __name__ == "__main__":
    main()
