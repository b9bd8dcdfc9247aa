"""Teacher-refined regression: a one-step student pulled toward the teacher's re-solve of its own samples.

The student G maps pure noise z at the served step t = 999 to a latent x = G(z, c) in one
evaluation (the `turbo` sampler's map, as the ADD and DMD students). Each update re-noises the
student's sample with the same z,
    x_s = sqrt(a_s) sg(x) + sqrt(1 - a_s) z,        s = --t-start,
lets the frozen teacher solve from there with guided DDIM (w = 4, eta 0, --teacher-steps evenly
spaced steps from s to 0) to y, and regresses x on y:  loss = mean (x - y)^2.
- The target is a deterministic function of (z, c) and the student's current weights: re-noising
  with fresh noise would make y random given z, and the regression would learn its conditional
  mean (the blur ADD's regression showed).
- s = 999: x_s is z up to 7% of x, and y is the teacher's own ODE sample from z, i.e. online
  one-step knowledge distillation (Luhman & Luhman 2021) without a stored bank.
- s < 999: SDEdit at strength s (Meng et al. 2022) on the student's sample: y keeps what of x the
  guided teacher accepts at that noise level and redraws the rest, so the target stays near the
  student's current map (easy to follow) while carrying the teacher's corrections - objects,
  attributes and, for s in the noisy half where layouts settle, relations.
Where G already agrees with the teacher the loss vanishes, so the fixed point is a map the
teacher's solver leaves unchanged. The student starts from a diffusers UNet folder (--init-unet,
e.g. the shipped DMD student), else from the teacher.

    python -m training.distill_refine --out RUN --seconds S [--device cuda] [--batch B] [--lr LR]
        [--t-start S] [--teacher-steps K] [--init-unet DIR] [--ema-decay D]
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from training.checkpoint import Deadline, clipped_step, load_state, save_state, stage_parser
from training.data import sample_scenes, tokenize
from training.diffusion import add_noise, alphas_cumprod, ddim_sample
from training.distill_add import STUDENT_TIMESTEPS, x0_from_eps
from training.distill_lcm import teacher_scaling
from training.one_step import OneStepStudent, load_judge
from training.text_unet import EMPTY_PROMPT, TextUNet, load_frozen_teacher, load_frozen_vae

STAGE = "refine"
GUIDANCE = 4.0
T_START = 800
TEACHER_STEPS = 8
EMA_DECAY = 0.995
PROBE_EVERY_S = 90.0


def refine(teacher: TextUNet, x: Tensor, noise: Tensor, text_both: Tensor, t_start: int, steps: int,
           alpha_bar: Tensor) -> Tensor:
    """The teacher's guided DDIM solve (w = GUIDANCE) from x re-noised to t_start with `noise`, its
    last x0 prediction (fp32 latents); text_both = (conditional rows; unconditional rows) of the
    text encoder's output."""
    cuda = x.device.type == "cuda"
    start = torch.full((len(x),), t_start, device=x.device, dtype=torch.long)
    x_start = add_noise(x.float(), noise.float(), start, alpha_bar).float()

    def guided_eps(x_t: Tensor, t: Tensor) -> Tensor:
        with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=cuda):
            eps_c, eps_u = teacher.unet(torch.cat((x_t, x_t)), torch.cat((t, t)), encoder_hidden_states=text_both).sample.float().chunk(2)
        return eps_u + GUIDANCE * (eps_c - eps_u)

    return ddim_sample(guided_eps, x_start, steps, alpha_bar.float(), t_start, clean=True)


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 3e-5,
          t_start: int = T_START, teacher_steps: int = TEACHER_STEPS, init_unet: Path | None = None,
          ema_decay: float = EMA_DECAY, pool_size: int = 60_000, eval_count: int = 256,
          probe_every_s: float = PROBE_EVERY_S) -> dict[str, float]:
    """Distil (or resume) the one-step student for `seconds` of wall clock; returns its judge accuracy.

    Every probe_every_s the EMA student is scored on 64 seen captions (not the final evaluation's);
    the best such EMA is a candidate of the final evaluation beside the last EMA and raw weights."""
    if not 0 < t_start <= 999 or teacher_steps < 1:
        raise ValueError("need 0 < t_start <= 999 and teacher_steps >= 1")
    deadline = Deadline(seconds)
    cuda = device.type == "cuda"
    batch = batch or (512 if cuda else 4)
    directory = out / STAGE
    teacher = load_frozen_teacher(out, device)
    scaling = teacher_scaling(out)
    alpha_bar = alphas_cumprod(device)

    state = load_state(directory)
    run = OneStepStudent(teacher.unet, directory, state, ema_decay, init_unet)
    student = run.student
    opt = torch.optim.AdamW(student.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    state.metrics.update({"lr": lr, "t_start": t_start, "teacher_steps": teacher_steps, "guidance": GUIDANCE,
                          "ema_decay": ema_decay, "batch": batch})
    gen = torch.Generator(device=device).manual_seed(11000 + state.step)

    scenes = sample_scenes(500 + state.step, pool_size if cuda else 64, "train")
    tokens = tokenize([s.caption.text for s in scenes]).to(device)
    empty = tokenize([EMPTY_PROMPT]).to(device)
    judge = load_judge(out, device)
    vae = load_frozen_vae(out, device)
    next_probe = probe_every_s
    eval_reserve = 45.0 if cuda else min(0.3 * seconds, 120.0)
    start_step = state.step
    t_top = torch.full((batch,), STUDENT_TIMESTEPS[0], device=device, dtype=torch.long)

    while deadline.left() > eval_reserve:
        rows = torch.randint(0, len(tokens), (batch,), generator=gen, device=device)
        noise = torch.randn((batch, 4, 16, 16), generator=gen, device=device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            text_both = teacher.text_encoder(torch.cat((tokens[rows], empty.expand(batch, -1)))).last_hidden_state
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            x = x0_from_eps(noise, student(noise, t_top, encoder_hidden_states=text_both[:batch]).sample, t_top, alpha_bar)
        target = refine(teacher, x.detach(), noise, text_both, t_start, teacher_steps, alpha_bar)
        loss = ((x - target) ** 2).mean()
        clipped_step(opt, loss, student.parameters())
        run.ema.update(student)
        state.step += 1
        if state.step % 10 == 0:
            state.log("refined_regression", loss.item())
        if deadline.elapsed() >= next_probe:
            next_probe = deadline.elapsed() + probe_every_s
            probe = run.probe(state, teacher, vae, scaling, judge, device)
            print(f"{STAGE} step {state.step} t {deadline.elapsed():.0f}s probe {probe:.3f} loss {loss.item():.4f}", flush=True)

    state.elapsed_s += deadline.elapsed()
    state.metrics["steps_this_run"] = state.step - start_step
    metrics = run.finish(state, teacher, vae, scaling, judge, eval_count if cuda else 4, device)
    save_state(directory, state, f"teacher-refined regression (s = {t_start}, {teacher_steps} teacher steps)")
    return metrics


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: 512 on GPU, 4 on CPU")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--t-start", type=int, default=T_START, help="the re-noising timestep s (999: online distillation)")
    parser.add_argument("--teacher-steps", type=int, default=TEACHER_STEPS, help="guided DDIM steps of the teacher from s")
    parser.add_argument("--init-unet", type=Path, default=None, help="a fresh run starts from this diffusers UNet folder")
    parser.add_argument("--ema-decay", type=float, default=EMA_DECAY)
    args = parser.parse_args()
    print(STAGE, train(args.out, args.seconds, torch.device(args.device), batch=args.batch, lr=args.lr,
                       t_start=args.t_start, teacher_steps=args.teacher_steps, init_unet=args.init_unet,
                       ema_decay=args.ema_decay), flush=True)


if __name__ == "__main__":
    main()
