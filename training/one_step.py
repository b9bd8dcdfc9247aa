"""The bookkeeping every one-step student stage shares (training.distill_dmd, training.distill_refine).

A stage directory holds the trained student (`student`), its EMA (`ema_student`) and the best EMA
by in-run probe (`best_ema_student`); a fresh run also keeps its starting weights in memory, to be
evaluated beside the candidates for the record. The probe scores the EMA's one-step samples on 64
seen captions (seed PROBE_SEED, unlike the final evaluation's); the final evaluation
(training.distill_add's) scores every candidate and names the one to export.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import NamedTuple

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from training.checkpoint import EMA, STUDENT_CONFIG, StageState, load_weights, save_weights
from training.data import Caption, sample_scenes, tokenize
from training.diffusion import alphas_cumprod
from training.distill_add import _evaluate, add_generate, decode, one_step_x0, x0_from_eps
from training.distill_lcm import teacher_scaling
from training.judge import caption_accuracy
from training.models import Judge
from training.text_unet import EMPTY_PROMPT, TextUNet, load_frozen_teacher, load_frozen_vae

PROBE_SEED = 777


def load_judge(out: Path, device: torch.device) -> Judge:
    """RUN's judge, frozen: the probes and the final evaluation score with it."""
    judge = Judge().to(device)
    if not load_weights(judge, out / "judge" / "judge.safetensors"):
        raise FileNotFoundError(f"{out / 'judge' / 'judge.safetensors'} missing: the evaluation needs the judge")
    return judge.requires_grad_(False).eval()


class StudentBeside(NamedTuple):
    """The CPU analyses' parts (training.adam_first_step, training.score_targets): RUN's frozen teacher, VAE and judge,
    the latent scaling and alphas_cumprod, a student UNet (fp32, eval) and a fake score (a critic's, else the teacher's)."""

    teacher: TextUNet
    vae: AutoencoderKL
    judge: Judge
    scaling: float
    alpha_bar: torch.Tensor
    student: UNet2DConditionModel
    fake: UNet2DConditionModel


def load_student_beside(run: Path, unet: Path, critic: Path | None, device: torch.device) -> StudentBeside:
    """StudentBeside on `device`: RUN holds the teacher, VAE and judge (training.export --import), UNET is a diffusers
    folder, CRITIC a run's critic_fp16 folder (its fake_score.safetensors) or None."""
    teacher = load_frozen_teacher(run, device)
    fake = copy.deepcopy(teacher.unet)
    if critic is not None:
        load_weights(fake, critic / "fake_score.safetensors")
    return StudentBeside(teacher, load_frozen_vae(run, device), load_judge(run, device), teacher_scaling(run),
                         alphas_cumprod(device), UNet2DConditionModel.from_pretrained(unet).float().eval().to(device), fake)


@torch.no_grad()
def scores_x0(parts: StudentBeside, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, empty: torch.Tensor,
              guidance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DMD's two x0 estimates of noised latents x_t at timesteps t (fp32): the teacher's, guided at `guidance` against
    the empty prompt's embedding `empty` (1 or B rows), and the fake score's; text (B, L, D) the captions' embeddings."""
    rows = x_t.shape[0]
    cond, uncond = parts.teacher.unet(torch.cat((x_t, x_t)), torch.cat((t, t)),
                                      encoder_hidden_states=torch.cat((text, empty.expand(rows, -1, -1)))).sample.chunk(2)
    real = x0_from_eps(x_t, uncond + guidance * (cond - uncond), t, parts.alpha_bar)
    return real, x0_from_eps(x_t, parts.fake(x_t, t, encoder_hidden_states=text).sample, t, parts.alpha_bar)


class SeenSamples(NamedTuple):
    """The student's one-step samples on the CPU analyses' seen captions (seed ANALYSIS_SEED), batch by batch."""

    captions: list[Caption]
    three: list[int]  # the three-object captions' rows
    texts: list[torch.Tensor]  # the captions' embeddings, one (batch, L, D) tensor per batch of rows
    empty: torch.Tensor  # the empty prompt's embedding (1, L, D)
    x: torch.Tensor  # the student's latent samples (N, 4, 16, 16), fp32
    noise: torch.Tensor  # the noise they came from (N, 4, 16, 16), on the student's device


ANALYSIS_SEED = 4343


@torch.no_grad()
def caption_embeddings(parts: StudentBeside, captions: list[Caption], batch: int) -> torch.Tensor:
    """The teacher's text encoder's last hidden states (N, L, D) of the captions, `batch` at a time, on its device."""
    encode = parts.teacher.text_encoder
    return torch.cat([encode(tokenize([c.text for c in captions[i : i + batch]]).to(encode.device)).last_hidden_state
                      for i in range(0, len(captions), batch)])


@torch.no_grad()
def student_latents(unet: UNet2DConditionModel, parts: StudentBeside, noise: torch.Tensor, text: torch.Tensor,
                    batch: int) -> torch.Tensor:
    """A one-step UNet's latent samples (fp32) from noise (N, 4, 16, 16) and caption embeddings (N, L, D), `batch` at a
    time."""
    return torch.cat([one_step_x0(unet, noise[i : i + batch], text[i : i + batch], parts.alpha_bar)
                      for i in range(0, len(noise), batch)])


@torch.no_grad()
def latent_accuracy(parts: StudentBeside, x: torch.Tensor, captions: list[Caption]) -> float:
    """Whole-caption judge accuracy of latents x, decoded, against their captions."""
    return caption_accuracy(parts.judge, decode(parts.vae, x, parts.scaling).clamp(0, 1), captions)[0]["caption"]


@torch.no_grad()
def seen_samples(parts: StudentBeside, count: int, batch: int, gen: torch.Generator) -> SeenSamples:
    """SeenSamples of `count` captions, the student's noise drawn first from `gen` (a CPU generator) and moved to the
    student's device."""
    captions = [s.caption for s in sample_scenes(ANALYSIS_SEED, count, "train")]
    text = caption_embeddings(parts, captions, batch)
    noise = torch.randn((count, 4, 16, 16), generator=gen).to(text.device)
    encode = parts.teacher.text_encoder
    return SeenSamples(captions, [i for i, c in enumerate(captions) if len(c.objects) == 3], list(text.split(batch)),
                       encode(tokenize([EMPTY_PROMPT]).to(encode.device)).last_hidden_state,
                       student_latents(parts.student, parts, noise, text, batch), noise)


@torch.no_grad()
def judged(parts: StudentBeside, x: torch.Tensor, samples: SeenSamples) -> tuple[float, float]:
    """Whole-caption judge accuracy of latents x decoded against samples' captions, and on its three-object ones (nan
    without any)."""
    images = decode(parts.vae, x, parts.scaling).clamp(0, 1)
    whole = caption_accuracy(parts.judge, images, samples.captions)[0]["caption"]
    if not samples.three:
        return whole, float("nan")
    return whole, caption_accuracy(parts.judge, images[samples.three], [samples.captions[i] for i in samples.three])[0]["caption"]


def probe_one_step(unet: UNet2DConditionModel, teacher: TextUNet, vae: AutoencoderKL, scaling: float,
                   judge: Judge, device: torch.device) -> float:
    """One-step whole-caption accuracy on 64 seen captions of seed PROBE_SEED."""
    captions = [s.caption for s in sample_scenes(PROBE_SEED, 64 if device.type == "cuda" else 4, "train")]
    images = add_generate(unet, teacher.text_encoder, vae, scaling, [c.text for c in captions], 5, device)
    return float(caption_accuracy(judge, images, captions)[0]["caption"])


def student_architecture(teacher_unet: UNet2DConditionModel, directory: Path, init_unet: Path | None) -> UNet2DConditionModel:
    """The student's UNet before its weights: the architecture `directory` recorded (a resumed run), else init_unet's
    when it differs from the teacher's (a grown student, training.grow; recorded in `directory`), else a copy of the
    teacher's UNet."""
    recorded = directory / STUDENT_CONFIG
    if not recorded.exists() and init_unet is not None:
        config = UNet2DConditionModel.load_config(init_unet)
        if _architecture(config) != _architecture(dict(teacher_unet.config)):
            directory.mkdir(parents=True, exist_ok=True)
            recorded.write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, indent=1) + "\n")
    if recorded.exists():
        student = UNet2DConditionModel.from_config(json.loads(recorded.read_text()))
        return student.to(device=teacher_unet.device, dtype=teacher_unet.dtype)
    return copy.deepcopy(teacher_unet)


def _architecture(config: dict[str, object]) -> dict[str, object]:
    """A UNet config's entries that shape its modules (diffusers' bookkeeping keys dropped, lists as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}


class OneStepStudent:
    """The student of a stage in `directory` (a copy of the teacher's UNet or a grown one: student_architecture,
    trained), resumed from its checkpoints, else started from `init_unet` (a diffusers UNet folder), else from `fallback`
    (a student checkpoint of another stage, recorded as that stage's name), else the teacher; its
    EMA and best-probe EMA; `initial`: the starting weights on a fresh run (state.step 0). ema_from_init: a fresh run's
    EMA keeps its full decay from the first update, so it averages around the loaded weights instead of following
    the first updates (EMA's warm-up weighs update n by 1 - (1+n)/(10+n): the first by 0.82)."""

    def __init__(self, teacher_unet: UNet2DConditionModel, directory: Path, state: StageState, ema_decay: float,
                 init_unet: Path | None = None, fallback: Path | None = None, ema_from_init: bool = False) -> None:
        self.directory = directory
        self.student = student_architecture(teacher_unet, directory, init_unet).train().requires_grad_(True)
        if load_weights(self.student, directory / "student.safetensors"):
            pass
        elif init_unet is not None:
            self.student.load_state_dict(UNet2DConditionModel.from_pretrained(init_unet).float().state_dict())
            state.metrics["init"] = f"unet:{init_unet.parent.name}"  # type: ignore[assignment]
        elif fallback is not None and load_weights(self.student, fallback):
            state.metrics["init"] = fallback.parent.name  # type: ignore[assignment]
        else:
            state.metrics["init"] = "teacher"  # type: ignore[assignment]
        self.initial = copy.deepcopy(self.student).eval().requires_grad_(False) if state.step == 0 else None
        self.ema_model = copy.deepcopy(self.student).eval().requires_grad_(False)
        load_weights(self.ema_model, directory / "ema_student.safetensors")
        self.best_model = copy.deepcopy(self.ema_model)
        load_weights(self.best_model, directory / "best_ema_student.safetensors")
        self.ema = EMA(self.ema_model, ema_decay, warmup=not ema_from_init)
        self.ema.updates = state.step
        self.best_probe = float(state.metrics.get("best_probe", -1.0))  # type: ignore[arg-type]

    def probe(self, state: StageState, teacher: TextUNet, vae: AutoencoderKL, scaling: float, judge: Judge,
              device: torch.device) -> float:
        """Score the current EMA (probe_one_step), log it, and keep it as the best EMA if it is."""
        self.ema.copy_to(self.ema_model)
        probe = probe_one_step(self.ema_model, teacher, vae, scaling, judge, device)
        state.log("probe_ema_seen_caption", probe)
        if probe > self.best_probe:
            self.best_probe = probe
            self.best_model.load_state_dict(self.ema_model.state_dict())
            state.metrics["best_probe"] = probe
            state.metrics["best_probe_step"] = state.step
        return probe

    def finish(self, state: StageState, teacher: TextUNet, vae: AutoencoderKL, scaling: float, judge: Judge,
               count: int, device: torch.device) -> dict[str, float]:
        """Save the three students, evaluate the candidates (and the start, for the record) on `count`
        captions per split; the metrics, also merged into state.metrics (the caller saves the state)."""
        self.ema.copy_to(self.ema_model)
        save_weights(self.student, self.directory / "student.safetensors")
        save_weights(self.ema_model, self.directory / "ema_student.safetensors")
        save_weights(self.best_model, self.directory / "best_ema_student.safetensors")
        candidates = {"ema_student": self.ema_model, "student": self.student.eval()}
        if self.best_probe >= 0:
            candidates["best_ema_student"] = self.best_model
        metrics = _evaluate(candidates, teacher, vae, scaling, judge, count, device)
        if self.initial is not None:  # the starting point on the same captions, for the record (never exported)
            start = _evaluate({"init": self.initial}, teacher, vae, scaling, judge, count, device)
            metrics.update({k: v for k, v in start.items() if k != "export"})
        state.metrics.update(metrics)
        return metrics
