"""Latent consistency distillation of the bundled UNet into a 1-4 step student.

Luo et al. 2023 (LCM), Alg. 1, following Song et al. 2023 (consistency distillation): from
x_{t_{n+k}} the teacher's guided DDIM step (skipping k = 20 timesteps of 1000, i.e. a 50-step
solver grid) gives x_{t_n}; the student f(x_{t_{n+k}}) is pulled toward the EMA target
f^-(x_{t_n}) under a pseudo-Huber loss. f = c_skip(t) x_t + c_out(t) x0_eps(x_t, t) with the
LCMScheduler boundary constants (sigma_data 0.5, timestep scaling 10). The guidance scale is fixed
at distillation time (w = 4, the teacher's best adherence in its own sweep) rather than an input:
pipelines.text_to_image would embed a request's w for a UNet with time_cond_proj_dim, but the
engine batches rows of many requests into one pass and LatentUNetDenoiser holds one w for the
whole pass, so served requests could not choose w; a w input would only cost training signal.
The text encoder is the teacher's, frozen and shared. The teacher is read from a run directory
(text_unet/, autoencoder/, judge/), e.g. one made from shipped weights by
`python -m training.export --import weights RUN`.

    python -m training.distill_lcm --out RUN --seconds S [--device cuda]
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor

from training.checkpoint import (
    Deadline,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_main,
)
from training.data import sample_scenes, scenes_to_batch, tokenize
from training.diffusion import add_noise, alphas_cumprod
from training.judge import caption_accuracy
from training.models import Judge
from training.text_unet import EMPTY_PROMPT, encode_pool, load_frozen_teacher, load_frozen_vae

STAGE = "lcm"
SKIP = 20  # timesteps per solver step: a 50-step DDIM grid over 1000 training timesteps
GUIDANCE = 4.0
HUBER_C = 1e-3
TARGET_EMA = 0.95
TIMESTEP_SCALING, SIGMA_DATA = 10.0, 0.5
LCM_SCHEDULER_CONFIG = {
    "_class_name": "LCMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "original_inference_steps": 1000 // SKIP,
    "timestep_scaling": TIMESTEP_SCALING,
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def teacher_scaling(run: Path) -> float:
    """The teacher's VAE latent scaling in RUN (text_unet/state.json, written by the teacher's
    training or by `python -m training.export --import weights RUN`)."""
    metrics = load_state(run / "text_unet").metrics
    if "scaling_factor" not in metrics:
        raise FileNotFoundError(f"{run / 'text_unet' / 'state.json'} lacks scaling_factor: "
                                "make RUN with `python -m training.export --import weights RUN`")
    return float(metrics["scaling_factor"])  # type: ignore[arg-type]


def boundary(t: Tensor) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) per row for integer timesteps t (B,), shaped (B, 1, 1, 1)."""
    scaled = t.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / torch.sqrt(scaled**2 + SIGMA_DATA**2)
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def consistency(unet: UNet2DConditionModel, x: Tensor, t: Tensor, text: Tensor, alpha_bar: Tensor) -> Tensor:
    """f(x_t, t) = c_skip x_t + c_out x0(eps) (LCM, eq. 8 with eps-prediction)."""
    a = alpha_bar[t].float().view(-1, 1, 1, 1)
    eps = unet(x, t, encoder_hidden_states=text).sample.float()
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    c_skip, c_out = boundary(t)
    return c_skip * x + c_out * x0


def lcm_timesteps(steps: int) -> list[int]:
    """The LCMScheduler's timesteps for `steps` (original grid of 50): 4 -> [999, 759, 499, 259]."""
    grid = list(range(SKIP - 1, 1000, SKIP))[::-1]  # 999, 979, ..., 19
    return [grid[int(i * len(grid) / steps)] for i in range(steps)]


@torch.no_grad()
def lcm_generate(unet: UNet2DConditionModel, text_encoder: torch.nn.Module, vae: torch.nn.Module, scaling: float,
                 texts: list[str], steps: int, seed: int, device: torch.device) -> Tensor:
    """Multistep consistency sampling (LCM, Alg. 3): images (B, 3, 64, 64) in [0, 1]."""
    alpha_bar = alphas_cumprod(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    cuda = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        text = text_encoder(tokenize(texts).to(device)).last_hidden_state
    x = torch.randn((len(texts), 4, 16, 16), generator=gen, device=device)
    timesteps = lcm_timesteps(steps)
    for i, t in enumerate(timesteps):
        tt = torch.full((len(texts),), t, device=device, dtype=torch.long)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            x0 = consistency(unet, x, tt, text, alpha_bar)
        if i + 1 < len(timesteps):
            nxt = torch.full_like(tt, timesteps[i + 1])
            x = add_noise(x0, torch.randn(x0.shape, generator=gen, device=device), nxt, alpha_bar)
        else:
            x = x0
    return (vae.decode(x / scaling).sample.float().clamp(-1, 1) + 1) / 2


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 1e-4,
          pool_size: int = 60_000, eval_count: int = 256) -> dict[str, float]:
    """Distil (or resume) the student for `seconds` of wall clock; returns its judge accuracy."""
    deadline = Deadline(seconds)
    cuda = device.type == "cuda"
    batch = batch or (256 if cuda else 4)
    directory = out / STAGE
    teacher = load_frozen_teacher(out, device)
    scaling = teacher_scaling(out)
    student = copy.deepcopy(teacher.unet).train().requires_grad_(True)
    load_weights(student, directory / "student.safetensors")
    target = copy.deepcopy(student).eval().requires_grad_(False)
    load_weights(target, directory / "ema_student.safetensors")
    state = load_state(directory)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    vae = load_frozen_vae(out, device)
    gen = torch.Generator(device=device).manual_seed(5000 + state.step)
    alpha_bar = alphas_cumprod(device)

    scenes = sample_scenes(100 + state.step, pool_size if cuda else 64, "train")
    pool = scenes_to_batch(scenes).to(device)
    tokens = tokenize([s.caption.text for s in scenes]).to(device)
    empty = tokenize([EMPTY_PROMPT]).to(device)
    latent_mean, _ = encode_pool(vae, pool, gen)  # (P, 4, 16, 16)

    eval_reserve = 20.0 if cuda else 0.3 * seconds
    start_step = state.step
    while deadline.left() > eval_reserve:
        rows = torch.randint(0, len(scenes), (batch,), generator=gen, device=device)
        x0 = latent_mean[rows].float() * scaling
        index = torch.randint(0, 1000 // SKIP, (batch,), generator=gen, device=device)
        t = index * SKIP + SKIP - 1  # 19 ... 999
        t_prev = (t - SKIP).clamp(min=0)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        x_t = add_noise(x0, eps, t, alpha_bar)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            text_both = teacher.text_encoder(torch.cat((tokens[rows], empty.expand(batch, -1)))).last_hidden_state
            text = text_both[:batch]
            both = teacher.unet(torch.cat((x_t, x_t)), torch.cat((t, t)), encoder_hidden_states=text_both).sample.float()
            eps_c, eps_u = both.chunk(2)
            eps_w = eps_u + GUIDANCE * (eps_c - eps_u)
            a_t = alpha_bar[t].float().view(-1, 1, 1, 1)
            a_prev = alpha_bar[t_prev].float().view(-1, 1, 1, 1)
            x0_w = (x_t - (1 - a_t).sqrt() * eps_w) / a_t.sqrt()
            x_prev = a_prev.sqrt() * x0_w + (1 - a_prev).sqrt() * eps_w  # DDIM, eta = 0
            aim = consistency(target, x_prev, t_prev, text, alpha_bar)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            pred = consistency(student, x_t, t, text, alpha_bar)
        loss = (torch.sqrt((pred.float() - aim.float()) ** 2 + HUBER_C**2) - HUBER_C).mean()
        clipped_step(opt, loss, student.parameters())
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(student.parameters()), 1 - TARGET_EMA)
        state.step += 1
        if state.step % 10 == 0:
            state.log("pseudo_huber", loss.item())
    state.elapsed_s += deadline.elapsed()
    state.metrics["steps_this_run"] = state.step - start_step
    state.metrics["guidance"] = GUIDANCE
    save_weights(student, directory / "student.safetensors")
    save_weights(target, directory / "ema_student.safetensors")
    metrics: dict[str, float] = {}
    judge = Judge().to(device)
    if load_weights(judge, out / "judge" / "judge.safetensors"):
        judge.eval()
        count = eval_count if cuda else 4
        for steps in (1, 2, 4):
            for split, name in (("train", "seen"), ("heldout", "heldout")):
                captions = [s.caption for s in sample_scenes(12345, count, split)]
                images = lcm_generate(target, teacher.text_encoder, vae, scaling, [c.text for c in captions], steps, 99, device)
                acc, _ = caption_accuracy(judge, images, captions)
                metrics[f"lcm{steps}_{name}_caption"] = acc["caption"]
        state.metrics.update(metrics)
    save_state(directory, state, "LCM distillation: pseudo-Huber consistency loss")
    return metrics


def main() -> None:
    stage_main(__doc__.splitlines()[0], STAGE, train, batch_help="default: 256 on GPU, 4 on CPU")


if __name__ == "__main__":
    main()
