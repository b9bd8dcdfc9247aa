"""Distribution matching distillation (DMD) of the bundled UNet into a one-step student.

Yin et al. 2024 (DMD, eq. 7; DMD2's two time-scale rule): the student G maps pure noise z at the
served step t = 999 to a latent x = G(z, c) in one evaluation. Its gradient is the difference of
two scores of the noised sample x_t = sqrt(a_t) x + sqrt(1 - a_t) eps, t ~ U[T_MIN, T_MAX]:
    grad_x KL(p_G || p_real) ~ E_t [ (x0_fake(x_t, t, c) - x0_real(x_t, t, c)) / n(x) ],
- x0_real: the frozen teacher's guided x0 (w = 4, the issue's teacher setting; --guidance), so the student
  is pulled toward the guided distribution - the one whose adherence it is measured against;
- x0_fake: a "fake score" UNet, initialised from the teacher and trained online by the denoising
  loss on the student's own (detached) samples, so it tracks p_G; FAKE_STEPS fake updates per
  student update keep it current (DMD2, sec. 4.2);
- n(x) = mean |x - x0_real| per sample, DMD's normaliser.
The generator loss 0.5 ||x - sg(x - grad)||^2 has exactly that gradient. Unlike ADD's regression
toward the teacher's x0 from one noised sample (which pulls toward the conditional mean: blur),
the fake score's term removes the part of the teacher's pull the student already satisfies, so
the one-step samples stay sharp without a discriminator.

Optional (gan_weight > 0, DMD2 sec. 4.3): a real/fake classifier head on the fake score UNet's
mid-block features of noised latents (t ~ U[0, 1000)), trained with the fake score on VAE latents
of real renders of the same captions vs the student's samples (non-saturating logistic loss,
weight gan_d_weight beside the denoising loss); the student gets gan_weight x softplus(-logit) of
its own noised sample through the fake UNet. Unlike ADD's heads on frozen judge features, the
features learn with the classifier.

Optional (mismatch_weight > 0, with the GAN term): the classifier is matching-aware (Reed et al. 2016's
conditional discriminator): the same noised real latents under a hard negative of their caption
(training.data.hard_negative: one object's shape, colour or stated size, or the side / relation, changed)
count as fake too, at that weight. Real vs fake alone can be told apart by texture; this side can only
be told by reading the caption against the image, so the student's GAN term pulls it toward its caption
(its weakest: three objects' shapes and sizes, and relations).

Optional (judge_gan_weight > 0): ADD's discriminator beside DMD (Sauer et al. 2023, sec. 3.2; the issue's
"a discriminator on frozen image features - the judge's"): training.distill_add.JudgeDiscriminator's projection heads on
the frozen judge's feature maps of the decoded 64 px image, conditioned on the pooled caption embedding, hinge loss
against renders of the same captions, updated every iteration on the student's current samples; the student gets
judge_gan_weight x (-sum of the heads' mean logits) through the VAE decoder. The fake score's mid block (4 x 4) sees
an object in about one cell; the judge's maps (64 to 8 px) see its outline, where the one-step student's shapes and
sizes fail (three objects: shape 0.50, size 0.52 against the teacher's 0.93 / 0.95 on 96 CPU captions).

Optional (ode_weight > 0, DMD's first version): the regression of the student's x on the teacher's
own guided DDIM sample from the same noise, over the bank of training.distill_add.teacher_bank
(the same file format, so runs share one bank). The student starts from a diffusers UNet folder
(--init-unet, e.g. weights/bundled_turbo/unet: call 8 started from the ADD student), else from RUN's LCM student,
else from the teacher. The one-step sampler (`turbo`) serves it exactly as the ADD student: the
UNet's x0 at t = 999 from pure noise.

    python -m training.distill_dmd --out RUN --seconds S [--device cuda] [--batch B] [--lr LR]
        [--fake-lr LR] [--fake-steps K] [--init-unet DIR] [--ode-weight W --bank N --bank-file F]
        [--gan-weight G --gan-d-weight D] [--guidance W] [--compile MODE [--compile-cache FILE]] [--init-critic DIR]
        [--three-object-weight W] [--classifier-features mid|multi] [--judge-gan-weight J [--judge-gan-lr LR]]
        [--seed K] [--lr-warmup N] [--ema-from-init] [--t-range LO HI] [--draws D] [--mismatch-weight W]
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from training.checkpoint import (
    Deadline,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_parser,
)
from training.data import Scene, hard_negative, render, sample_scenes, scenes_to_batch, tokenize
from training.diffusion import add_noise, alphas_cumprod
from training.distill_add import (
    BANK_SHARE,
    STUDENT_TIMESTEPS,
    JudgeDiscriminator,
    decode,
    judge_features,
    shared_bank,
    x0_from_eps,
)
from training.distill_lcm import teacher_scaling
from training.models import UNET_CONFIG
from training.one_step import OneStepStudent, load_judge
from training.text_unet import EMPTY_PROMPT, load_frozen_teacher, load_frozen_vae

STAGE = "dmd"
GUIDANCE = 4.0
FAKE_STEPS = 5  # fake-score updates per student update
T_MIN, T_MAX = 20, 980  # timesteps of the score comparison (DMD: 0.02 T .. 0.98 T); --t-range narrows it
EMA_DECAY = 0.998
CRITIC_DIR = "critic_fp16"  # the fake score and classifier in fp16 (~18 MB): what a later call carries to continue a run
PROBE_EVERY_S = 120.0  # in-run probe of the EMA student's one-step accuracy (captions unlike the final eval's)


def matching_gradient(x: Tensor, real_x0: Tensor, fake_x0: Tensor) -> Tensor:
    """DMD's gradient of the samples x (DMD eq. 7 with its normaliser): (fake_x0 - real_x0) / mean|x - real_x0| per
    sample; real_x0 / fake_x0 are the two scores' x0 predictions on x re-noised."""
    norm = (x.detach() - real_x0).abs().mean(dim=tuple(range(1, x.dim())), keepdim=True).clamp(min=1e-4)
    return torch.nan_to_num((fake_x0 - real_x0) / norm)


def matching_loss(x: Tensor, grad: Tensor) -> Tensor:
    """DMD's generator loss 0.5 * mean((x - sg(x - grad))^2), whose gradient in x is grad / x.numel()."""
    return 0.5 * ((x - (x.detach() - grad)) ** 2).mean()


def distribution_matching(x: Tensor, real_x0: Tensor, fake_x0: Tensor) -> tuple[Tensor, Tensor]:
    """(loss, grad): matching_loss of x for one draw's matching_gradient."""
    grad = matching_gradient(x, real_x0, fake_x0)
    return matching_loss(x, grad), grad


class MidFeatureClassifier(nn.Module):
    """Real/fake logit (B,) from the fake score UNet's mid-block output (B, C, 4, 4) (DMD2's classifier)."""

    scales = False  # its input: unet_with_mid(..., scales=False), the mid block's output alone

    def __init__(self, channels: int = UNET_CONFIG["block_out_channels"][-1]) -> None:  # type: ignore[index]
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(32, channels), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU())
        self.out = nn.Linear(channels, 1)

    def forward(self, feature: Tensor) -> Tensor:
        return self.out(self.body(feature.float()).mean(dim=(2, 3))).squeeze(1)


class MultiScaleClassifier(nn.Module):
    """Real/fake logit (B,) from the fake score UNet's features at three scales: after its first two down blocks
    (16x16 and 8x8 for the bundled UNet's 16x16 latents) and its mid block (4x4). The mid block alone sees an
    object in about one 4x4 cell and pools the map to one value; the finer maps give per-location logits where
    one object's shape spans several cells (averaged over locations, then scales)."""

    scales = True  # its input: unet_with_mid(..., scales=True)

    def __init__(self, channels: tuple[int, ...] = (UNET_CONFIG["block_out_channels"][0], UNET_CONFIG["block_out_channels"][1],  # type: ignore[index]
                                                    UNET_CONFIG["block_out_channels"][-1])) -> None:  # type: ignore[index]
        super().__init__()
        self.heads = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(32, c), nn.SiLU(), nn.Conv2d(c, 1, 1)) for c in channels
        ])

    def forward(self, features: tuple[Tensor, ...]) -> Tensor:
        return torch.stack([head(f.float()).mean(dim=(1, 2, 3)) for head, f in zip(self.heads, features)]).mean(0)


CLASSIFIERS: dict[str, type[nn.Module]] = {"mid": MidFeatureClassifier, "multi": MultiScaleClassifier}


def critic_classifier(critic: Path, kind: str = "mid") -> nn.Module:
    """A GAN run's classifier of `kind` (CLASSIFIERS) from its critic folder (classifier.safetensors, as CRITIC_DIR
    holds it), in eval mode; FileNotFoundError where the folder has none."""
    classifier = CLASSIFIERS[kind]()
    if not load_weights(classifier, critic / "classifier.safetensors"):
        raise FileNotFoundError(f"{critic}: no classifier.safetensors (a GAN run's critic holds one)")
    return classifier.eval()


def save_compile_cache(path: Path) -> None:
    """torch.compile's artifacts of this process so far (inductor's graphs and kernels) -> path."""
    artifacts = torch.compiler.save_cache_artifacts()
    if artifacts is None:
        print(f"{STAGE} compile cache: nothing to save", flush=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(artifacts[0])
    print(f"{STAGE} compile cache saved: {len(artifacts[0]) / 2**20:.1f} MiB -> {path}", flush=True)


def unet_with_mid(unet: UNet2DConditionModel, sample: Tensor, timestep: Tensor, text: Tensor,
                  mid_only: bool = False, scales: bool = False) -> tuple[Tensor | None, Tensor | tuple[Tensor, ...]]:
    """(eps, mid-block output) of one UNet pass, the classifier's features as an explicit output (a forward
    hook's side effect does not survive torch.compile). mid_only stops after the mid block (eps None): the
    classifier's terms never read the up path, so their gradients are the full pass's. scales: the features are
    (first down block's output, second's, mid block's), MultiScaleClassifier's input. The bundled UNet's
    blocks all take text (cross-attention); timestep: (B,) or a scalar."""
    emb = unet.time_embedding(unet.time_proj(timestep.expand(sample.shape[0])).to(sample.dtype))
    h = unet.conv_in(sample)
    skips: tuple[Tensor, ...] = (h,)
    for block in unet.down_blocks:
        h, states = block(h, emb, encoder_hidden_states=text)
        skips += states
    h = unet.mid_block(h, emb, encoder_hidden_states=text)
    # skips: conv_in's output, then per down block its resnet outputs and its downsampler's
    mid: Tensor | tuple[Tensor, ...] = (skips[1], skips[3], h) if scales else h
    if mid_only:
        return None, mid
    for block in unet.up_blocks:
        count = len(block.resnets)
        h = block(h, skips[-count:], emb, encoder_hidden_states=text)
        skips = skips[:-count]
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(h))), mid


def comparison_range(t_range: tuple[int, int]) -> tuple[int, int]:
    """The timesteps [lo, hi) the two scores are compared at, checked: 0 <= lo < hi <= 1000."""
    lo, hi = t_range
    if not 0 <= lo < hi <= 1000:
        raise ValueError(f"t_range must satisfy 0 <= lo < hi <= 1000, got {t_range}")
    return lo, hi


def caption_draw_weights(scenes: list[Scene], three_object_weight: float) -> Tensor:
    """Relative draw weight of each scene's caption: three_object_weight for three objects, 1 for fewer."""
    return torch.tensor([three_object_weight if len(s.caption.objects) == 3 else 1.0 for s in scenes])


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 1e-5,
          fake_lr: float = 5e-5, fake_steps: int = FAKE_STEPS, init_unet: Path | None = None,
          ode_weight: float = 0.0, bank_count: int | None = None, bank_file: Path | None = None,
          pool_size: int = 60_000, eval_count: int = 256, ema_decay: float = EMA_DECAY,
          probe_every_s: float = PROBE_EVERY_S, gan_weight: float = 0.0, gan_d_weight: float = 0.1,
          guidance: float = GUIDANCE, compile_mode: str | None = None, compile_cache: Path | None = None,
          init_critic: Path | None = None, three_object_weight: float = 1.0,
          classifier_features: str = "mid", critic_warmup: int = 0, judge_gan_weight: float = 0.0,
          judge_gan_lr: float = 2e-4, seed: int = 0, lr_warmup: int = 0, ema_from_init: bool = False,
          t_range: tuple[int, int] = (T_MIN, T_MAX), draws: int = 1, anchor_weight: float = 0.0, anchor_every: int = 32,
          mismatch_weight: float = 0.0, max_iterations: int | None = None) -> dict[str, float]:
    """Distil (or resume) the one-step student for `seconds` of wall clock, or `max_iterations` fake-score updates
    if fewer (a test's bound that a busy machine cannot cut short); returns its judge accuracy.

    Every probe_every_s the EMA student is scored on 64 seen captions (training.one_step.PROBE_SEED, not the
    final evaluation's); the best such EMA is kept as best_ema_student and is a candidate of the
    final evaluation beside the last EMA and raw weights. compile_mode ("default", "reduce-overhead"): torch.compile
    of the student, teacher and fake-score passes (the loop is launch-bound on the card: small kernels); compile_cache:
    a file of torch.compile's artifacts (torch.compiler.save_cache_artifacts), loaded when present and written after
    the first student step (every graph compiled by then), so a later call on a fresh machine can skip most of the compilation.
    init_critic: a folder of another run's fake score and classifier (CRITIC_DIR, written at the end of every run in fp16)
    that a fresh run starts from instead of the teacher, so a run continued in a later call keeps its critic.
    three_object_weight: how much more often captions of three objects are drawn than the others (the one-step student's
    weakest: 0.38 whole-caption agreement against the teacher's 0.81, training/results/analysis/).
    t_range: the timesteps [lo, hi) at which the student's noised sample is scored by the teacher and the fake score
    (default DMD's 20-980). A one-step student's outlines and sizes are low-noise detail: lo-hi = 20-500 weighs them more.
    classifier_features: the GAN classifier's input, "mid" (DMD2's: the fake score's mid block) or "multi"
    (MultiScaleClassifier: also the 16x16 and 8x8 down-block maps, where a small object's shape is visible).
    critic_warmup: this many fake-score (and classifier) updates on the student's samples before the first student
    update. A critic restarted from the teacher scores the teacher's distribution, not the student's, so the first
    student updates follow little but the guidance term (call 20: the probe fell 0.812 -> 0.688 and took ~580 steps
    to come back); the warm-up lets the critic catch up with the student first.
    judge_gan_weight: the weight of ADD's discriminator on the judge's frozen features (module docstring; 0: off),
    judge_gan_lr its learning rate. seed: runs from the same start with different seeds draw different captions and
    noise (0: the seeds of every run before it), so that side-by-side runs are distinct ingredients of a weight average.
    lr_warmup: the student's learning rate rises linearly over its first lr_warmup updates. Adam's first update moves
    every weight by about lr whatever the gradient's size (m / sqrt(v) = sign(g)); from the shipped student one such
    update at lr 2e-5 cost 0.766 -> 0.723 one-step accuracy on 256 CPU captions, at 2e-6 0.762 (call 25's analysis),
    and each call so far restarted Adam. ema_from_init: OneStepStudent's (the EMA averages around the loaded weights).
    draws: the distribution-matching gradient of each sample is the mean over this many draws of (t, forward noise),
    each scored by the teacher and the fake score (1: DMD's single draw). On the CPU the shipped student's samples moved
    in steps of 0.01 rose from 0.727 to 0.836 judged on 128 captions along the 4-draw mean, to 0.805 along single draws,
    and in steps of 0.05 along single draws fell to 0.15 (training.sample_flow, training/results/call27/sample_flow.md).
    anchor_weight: an output anchor (0: off). Each student update also runs the student on a second batch of (noise,
    caption) pairs, the anchors, and adds anchor_weight x mean |x_anchor - x_reference|^2, where the reference is a frozen
    copy of the student taken every anchor_every student updates (the first update of each period feels no pull). It
    charges an update for moving the student's outputs where the batch does not ask it to: on the CPU, regressions of
    the shipped student onto better targets near its own samples moved them as far off their useful direction as along
    it and gained nothing; with an anchor the off-line part shrank tenfold (training/results/call30/record.md).
    mismatch_weight: the GAN classifier also learns noised real latents under a hard negative of their caption as fake, at
    this weight (module docstring; needs gan_weight > 0). Each pool caption gets one negative, drawn once per run. With the
    GAN term on, the loss history's classifier_matching (every 50 iterations, with or without this term) is how often the
    classifier ranks a real latent's caption above its negative."""
    t_lo_hi = comparison_range(t_range)  # a bad range fails before any loading
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if anchor_weight < 0 or anchor_every < 1:
        raise ValueError(f"anchor_weight must be >= 0 and anchor_every >= 1, got {anchor_weight}, {anchor_every}")
    if mismatch_weight < 0 or (mismatch_weight > 0 and gan_weight <= 0):
        raise ValueError(f"mismatch_weight must be >= 0 and needs the GAN term (gan_weight > 0), got {mismatch_weight}, {gan_weight}")
    deadline = Deadline(seconds, out / "STOP")  # `touch RUN/STOP` ends the training early
    cuda = device.type == "cuda"
    batch = batch or (256 if cuda else 4)
    directory = out / STAGE
    teacher = load_frozen_teacher(out, device)
    scaling = teacher_scaling(out)
    alpha_bar = alphas_cumprod(device)

    state = load_state(directory)
    run = OneStepStudent(teacher.unet, directory, state, ema_decay, init_unet, fallback=out / "lcm" / "ema_student.safetensors",
                         ema_from_init=ema_from_init)
    student = run.student
    fake = copy.deepcopy(teacher.unet).train().requires_grad_(True)
    classifier = CLASSIFIERS[classifier_features]().to(device).train()
    scales = classifier.scales  # what the classifier reads: the mid block, or also the down-block maps
    critic = directory  # a resumed run's own critic; else init_critic's; else the teacher and a fresh classifier
    if not (directory / "fake_score.safetensors").exists() and init_critic is not None:
        if not (init_critic / "fake_score.safetensors").exists():
            raise FileNotFoundError(f"--init-critic {init_critic}: no fake_score.safetensors there")
        critic = init_critic
        state.metrics["init_critic"] = str(init_critic)
    load_weights(fake, critic / "fake_score.safetensors")
    load_weights(classifier, critic / "classifier.safetensors")
    gan = gan_weight > 0
    judge_gan = judge_gan_weight > 0
    disc = JudgeDiscriminator().to(device).train() if judge_gan else None
    if disc is not None:  # carried with the critic; a critic without one (calls before 25) leaves it fresh
        load_weights(disc, critic / "discriminator.safetensors")
        opt_d = torch.optim.AdamW(disc.parameters(), lr=judge_gan_lr, betas=(0.0, 0.99), weight_decay=0.0)
    opt_g = torch.optim.AdamW(student.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    warm_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda k: min(1.0, (k + 1) / lr_warmup)) if lr_warmup > 0 else None
    opt_f = torch.optim.AdamW([*fake.parameters(), *classifier.parameters()], lr=fake_lr, betas=(0.9, 0.999), weight_decay=0.0)
    state.metrics.update({"lr": lr, "fake_lr": fake_lr, "fake_steps": fake_steps, "ode_weight": ode_weight,
                          "guidance": guidance, "ema_decay": ema_decay, "three_object_weight": three_object_weight,
                          "classifier_features": classifier_features, "critic_warmup": critic_warmup,
                          "gan_weight": gan_weight, "gan_d_weight": gan_d_weight,
                          "judge_gan_weight": judge_gan_weight, "judge_gan_lr": judge_gan_lr, "seed": seed,
                          "lr_warmup": lr_warmup, "ema_from_init": ema_from_init, "t_range": list(t_lo_hi),
                          "draws": draws, "anchor_weight": anchor_weight, "anchor_every": anchor_every,
                          "mismatch_weight": mismatch_weight})
    gen = torch.Generator(device=device).manual_seed(9000 + state.step + 100_003 * seed)

    scenes = sample_scenes(300 + state.step + 100_003 * seed, pool_size if cuda else 64, "train")
    tokens = tokenize([s.caption.text for s in scenes]).to(device)
    draw = caption_draw_weights(scenes, three_object_weight).to(device) if three_object_weight != 1.0 else None
    empty = tokenize([EMPTY_PROMPT]).to(device)
    if gan:  # one hard negative per pool caption: the classifier's mismatched side, or only its logged matching
        rng = random.Random(f"negative:{seed}:{state.step}")
        negative_tokens = tokenize([hard_negative(s.caption, rng).text for s in scenes]).to(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):  # the frozen encoder, once
        encoded = [teacher.text_encoder(chunk) for chunk in tokens.split(1024)]
        text_pool = torch.cat([e.last_hidden_state for e in encoded])
        pooled_pool = torch.cat([e.pooler_output.float() for e in encoded])  # the judge discriminator's condition
        empty_text = teacher.text_encoder(empty).last_hidden_state
        negative_pool = (torch.cat([teacher.text_encoder(chunk).last_hidden_state for chunk in negative_tokens.split(1024)])
                         if gan else None)
    pool = scenes_to_batch(scenes).to(device) if gan or judge_gan else None
    top = STUDENT_TIMESTEPS[0]
    bank = None
    if ode_weight > 0:
        bank = shared_bank(teacher, tokens, empty, 300 + state.step, bank_count, bank_file, BANK_SHARE * seconds, gen, device)
        state.metrics["bank_size"] = len(bank[0])

    judge = load_judge(out, device)
    vae = load_frozen_vae(out, device)
    next_probe = probe_every_s
    eval_reserve = 30.0 if cuda else min(0.3 * seconds, 120.0)
    start_step, iteration = state.step, 0
    matching = torch.zeros((), device=device)
    t_top = torch.full((2 * batch,), top, device=device, dtype=torch.long)  # 2 x batch: the batch and its anchors

    def real_latents(pool: object, rows: Tensor) -> Tensor:
        """Scaled VAE latents (mean) of fresh renders of the pool's scenes `rows`."""
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            images = render(pool.index(rows), gen)  # type: ignore[attr-defined]
            return (vae.encode(images * 2 - 1).latent_dist.mean.float() * scaling).contiguous()

    def fake_pass(sample: Tensor, timestep: Tensor, text: Tensor, mid_only: bool = False) -> tuple[Tensor | None, Tensor | tuple[Tensor, ...]]:
        return unet_with_mid(fake, sample, timestep, text, mid_only, scales)

    student_call, teacher_call = student, teacher.unet
    if compile_mode:
        # static shapes: the student and teacher share UNet2DConditionModel.forward's code, so a first size change
        # (batch B, then 2B) would otherwise turn the batch dimension dynamic for both
        student_call = torch.compile(student, mode=compile_mode, dynamic=False)
        teacher_call = torch.compile(teacher.unet, mode=compile_mode, dynamic=False)
        fake_pass = torch.compile(fake_pass, mode=compile_mode, dynamic=False)  # type: ignore[assignment]
        state.metrics["compile"] = compile_mode
        if compile_cache is not None and compile_cache.exists():
            torch.compiler.load_cache_artifacts(compile_cache.read_bytes())
            print(f"{STAGE} compile cache loaded: {compile_cache.stat().st_size / 2**20:.1f} MiB", flush=True)

    def student_x0(noise: torch.Tensor, text: torch.Tensor, unet: nn.Module | None = None) -> torch.Tensor:
        t_rows = t_top[: len(noise)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            return x0_from_eps(noise, (student_call if unet is None else unet)(noise, t_rows, encoder_hidden_states=text).sample, t_rows, alpha_bar)

    # the anchor's reference: a frozen copy of the student, refreshed every anchor_every student updates
    reference = copy.deepcopy(student).eval().requires_grad_(False) if anchor_weight > 0 else None

    while deadline.left() > eval_reserve and (max_iterations is None or iteration < max_iterations):
        iteration += 1
        if compile_mode == "reduce-overhead":  # a new iteration: CUDA graphs may reuse the last one's output memory
            torch.compiler.cudagraph_mark_step_begin()
        student_turn = iteration > critic_warmup and (iteration - critic_warmup) % fake_steps == 0
        if iteration == critic_warmup + 1 and critic_warmup:
            print(f"{STAGE} critic warm-up: {critic_warmup} updates in {deadline.elapsed():.1f}s", flush=True)
        if bank is not None:
            pick = torch.randint(0, len(bank[0]), (batch,), generator=gen, device=device)
            rows, noise = bank[0][pick], bank[1][pick].float()
        else:
            rows = (torch.randint(0, len(tokens), (batch,), generator=gen, device=device) if draw is None
                    else torch.multinomial(draw, batch, replacement=True, generator=gen))
            noise = torch.randn((batch, 4, 16, 16), generator=gen, device=device)
        text = text_pool[rows]
        text_both = torch.cat((text, empty_text.expand(batch, -1, -1)))

        if student_turn:
            if reference is None:
                x = student_x0(noise, text)
            else:  # the batch and the anchors in one pass (one compiled shape)
                if (state.step - start_step) % anchor_every == 0:
                    reference.load_state_dict(student.state_dict())
                anchor_rows = torch.randint(0, len(tokens), (batch,), generator=gen, device=device)
                anchor_noise = torch.randn((batch, 4, 16, 16), generator=gen, device=device)
                with torch.no_grad():
                    anchor_start = student_x0(anchor_noise, text_pool[anchor_rows], reference).float()
                x, x_anchor = student_x0(torch.cat((noise, anchor_noise)), torch.cat((text, text_pool[anchor_rows]))).chunk(2)
                drift = ((x_anchor.float() - anchor_start) ** 2).mean()
            grad = torch.zeros_like(x)
            for _ in range(draws):  # the same shapes each draw: one compiled graph per pass
                t = torch.randint(*t_lo_hi, (batch,), generator=gen, device=device)
                x_t = add_noise(x.detach(), torch.randn(x.shape, generator=gen, device=device), t, alpha_bar).float()
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    eps_c, eps_u = teacher_call(torch.cat((x_t, x_t)), torch.cat((t, t)), encoder_hidden_states=text_both).sample.float().chunk(2)
                    real = x0_from_eps(x_t, eps_u + guidance * (eps_c - eps_u), t, alpha_bar)
                    faked = x0_from_eps(x_t, fake_pass(x_t, t, text)[0], t, alpha_bar)
                grad += matching_gradient(x, real, faked) / draws
            matching = matching_loss(x, grad)
            loss_g = matching
            if gan:  # the student's noised sample through the fake UNet (its weights get no update from this)
                t_g = torch.randint(0, 1000, (batch,), generator=gen, device=device)
                x_g = add_noise(x, torch.randn(x.shape, generator=gen, device=device), t_g, alpha_bar)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    gan_g = F.softplus(-classifier(fake_pass(x_g, t_g, text, True)[1])).mean()
                loss_g = loss_g + gan_weight * gan_g
            if disc is not None:  # the student's image through the VAE decoder and the judge's frozen features
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    logits = disc(judge_features(judge, decode(vae, x, scaling)), pooled_pool[rows])
                    gan_j = -torch.stack([logit.mean() for logit in logits]).sum()
                loss_g = loss_g + judge_gan_weight * gan_j
            if reference is not None:
                loss_g = loss_g + anchor_weight * drift
            ode = torch.zeros((), device=device)
            if bank is not None:
                ode = ((x - bank[2][pick].float()) ** 2).mean()
                loss_g = loss_g + ode_weight * ode
            clipped_step(opt_g, loss_g, student.parameters())
            if warm_g is not None:
                warm_g.step()
            run.ema.update(student)
            sample = x.detach()
            state.step += 1
            if state.step - start_step in (1, 10) or state.step % 50 == 0:  # the first: compile time; then the rate
                print(f"{STAGE} step {state.step} t {deadline.elapsed():.1f}s", flush=True)
            if compile_mode and compile_cache is not None and state.step - start_step == 1:  # every graph compiled
                save_compile_cache(compile_cache)
            if disc is not None and (state.step % 10 == 0 or state.step - start_step == 1):  # a short run shows it too
                state.log("judge_gan_generator+5", gan_j.item() + 5.0)  # shifted positive for the log-scale plot
            if reference is not None and (state.step - start_step <= 10 or state.step % 10 == 0):
                state.log("anchor_drift", drift.item())
            if state.step % 10 == 0:
                state.log("matching", matching.item())
                state.log("grad_norm_rms", grad.pow(2).mean().sqrt().item())
                if bank is not None:
                    state.log("ode_regression", ode.item())
                if gan:
                    state.log("gan_generator", gan_g.item())
        else:
            with torch.no_grad():
                sample = student_x0(noise, text).float()

        # the fake score learns the student's current distribution: the denoising loss on its samples
        t = torch.randint(0, 1000, (batch,), generator=gen, device=device)
        eps = torch.randn(sample.shape, generator=gen, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            eps_fake, feature = fake_pass(add_noise(sample, eps, t, alpha_bar), t, text)
            loss_f = ((eps_fake.float() - eps) ** 2).mean()  # type: ignore[union-attr]
            if gan:  # the classifier: the same noised student samples vs noised latents of real renders
                logit_fake = classifier(feature)
                real = real_latents(pool, rows)
                real_t = add_noise(real, torch.randn(real.shape, generator=gen, device=device), t, alpha_bar)
                _, feature = fake_pass(real_t, t, text, True)
                logit_real = classifier(feature)
                loss_d = F.softplus(logit_fake).mean() + F.softplus(-logit_real).mean()
                if mismatch_weight > 0 or iteration % 50 == 0:  # the same real latents under hard negatives of their captions
                    _, feature = fake_pass(real_t, t, negative_pool[rows], True)  # type: ignore[index]
                    logit_mismatch = classifier(feature)
                if mismatch_weight > 0:  # ... count as fake
                    loss_d = loss_d + mismatch_weight * F.softplus(logit_mismatch).mean()
                loss_f = loss_f + gan_d_weight * loss_d
        clipped_step(opt_f, loss_f, [*fake.parameters(), *classifier.parameters()])
        if disc is not None:  # ADD's hinge loss: renders of the same captions vs the student's current samples
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                real_features = judge_features(judge, render(pool.index(rows), gen))  # type: ignore[union-attr]
                fake_features = judge_features(judge, decode(vae, sample, scaling))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                d_real, d_fake = disc(real_features, pooled_pool[rows]), disc(fake_features, pooled_pool[rows])
                loss_dj = torch.stack([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(d_real, d_fake)]).sum()
            opt_d.zero_grad(set_to_none=True)
            loss_dj.backward()
            opt_d.step()
        if iteration % 50 == 0:
            if disc is not None:
                state.log("judge_disc_hinge", loss_dj.item())
            state.log("fake_denoising", loss_f.item())
            if gan:
                state.log("classifier_logistic", loss_d.item())
                state.log("classifier_accuracy", 0.5 * ((logit_real > 0).float().mean() + (logit_fake < 0).float().mean()).item())
                # matched above mismatched on the same real latents (without the mismatch term too: call 35's CPU probe
                # found DMD2's classifier ranking the mismatched caption higher, 0.40)
                state.log("classifier_matching", (logit_real > logit_mismatch).float().mean().item())

        if deadline.elapsed() >= next_probe:
            next_probe = deadline.elapsed() + probe_every_s  # not +=: a long compile would queue probes back to back
            probe = run.probe(state, teacher, vae, scaling, judge, device)
            print(f"{STAGE} step {state.step} t {deadline.elapsed():.0f}s probe {probe:.3f} "
                  f"matching {matching.item():.4f} fake {loss_f.item():.4f}", flush=True)

    state.elapsed_s += deadline.elapsed()
    state.metrics["steps_this_run"] = state.step - start_step
    save_weights(fake, directory / "fake_score.safetensors")
    save_weights(fake, directory / CRITIC_DIR / "fake_score.safetensors", torch.float16)  # to carry to a later call
    if gan:
        save_weights(classifier, directory / "classifier.safetensors")
        save_weights(classifier, directory / CRITIC_DIR / "classifier.safetensors", torch.float16)
    if disc is not None:
        save_weights(disc, directory / "discriminator.safetensors")
        save_weights(disc, directory / CRITIC_DIR / "discriminator.safetensors", torch.float16)
    metrics = run.finish(state, teacher, vae, scaling, judge, eval_count if cuda else 4, device)
    save_state(directory, state, "DMD: distribution matching, fake-score denoising")
    return metrics


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: 256 on GPU, 4 on CPU")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--fake-lr", type=float, default=5e-5)
    parser.add_argument("--fake-steps", type=int, default=FAKE_STEPS, help="fake-score updates per student update")
    parser.add_argument("--init-unet", type=Path, default=None, help="a fresh run starts from this diffusers UNet folder")
    parser.add_argument("--ode-weight", type=float, default=0.0, help="regression on the teacher's DDIM samples (0: off)")
    parser.add_argument("--bank", type=int, default=None, help="regression bank size (default: 65536 on GPU, 16 on CPU)")
    parser.add_argument("--bank-file", type=Path, default=None, help="share the bank: read it here, or build and save it here")
    parser.add_argument("--ema-decay", type=float, default=EMA_DECAY)
    parser.add_argument("--gan-weight", type=float, default=0.0, help="student's GAN term through the fake UNet (0: off)")
    parser.add_argument("--gan-d-weight", type=float, default=0.1, help="the classifier's loss beside the fake score's denoising")
    parser.add_argument("--guidance", type=float, default=GUIDANCE, help="the real score's guidance scale")
    parser.add_argument("--compile", choices=("default", "reduce-overhead"), default=None,
                        help="torch.compile the student, teacher and fake-score passes (off by default)")
    parser.add_argument("--init-critic", type=Path, default=None,
                        help=f"a fresh run's fake score and classifier from this folder (another run's dmd/{CRITIC_DIR})")
    parser.add_argument("--three-object-weight", type=float, default=1.0,
                        help="captions of three objects drawn this many times as often as the others (1: uniform)")
    parser.add_argument("--classifier-features", choices=tuple(CLASSIFIERS), default="mid",
                        help="the GAN classifier's input: the fake score's mid block, or also its 16x16 and 8x8 down-block maps")
    parser.add_argument("--critic-warmup", type=int, default=0,
                        help="fake-score and classifier updates on the student's samples before its first update")
    parser.add_argument("--judge-gan-weight", type=float, default=0.0,
                        help="ADD's discriminator on the judge's frozen features of the decoded image (0: off)")
    parser.add_argument("--judge-gan-lr", type=float, default=2e-4, help="that discriminator's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="the run's caption and noise draws (0: as every run before)")
    parser.add_argument("--lr-warmup", type=int, default=0, help="student updates over which its lr rises linearly (0: none)")
    parser.add_argument("--ema-from-init", action="store_true",
                        help="a fresh run's EMA keeps its full decay from the first update (it averages around the loaded student)")
    parser.add_argument("--draws", type=int, default=1,
                        help="(t, noise) draws averaged into each sample's distribution-matching gradient (1: DMD's)")
    parser.add_argument("--t-range", type=int, nargs=2, default=(T_MIN, T_MAX), metavar=("LO", "HI"),
                        help="timesteps [LO, HI) of the score comparison (default: DMD's 20 980)")
    parser.add_argument("--anchor-weight", type=float, default=0.0,
                        help="output anchor: weight of the change of the student's outputs on a second batch of (noise, caption) pairs (0: off)")
    parser.add_argument("--anchor-every", type=int, default=32, help="student updates between refreshes of the anchor's reference")
    parser.add_argument("--mismatch-weight", type=float, default=0.0,
                        help="the GAN classifier also learns real latents under hard-negative captions as fake (0: off)")
    parser.add_argument("--compile-cache", type=Path, default=None,
                        help="torch.compile's artifacts: loaded from this file when present, saved to it after the first student step")
    args = parser.parse_args()
    print(STAGE, train(args.out, args.seconds, torch.device(args.device), batch=args.batch, lr=args.lr,
                       fake_lr=args.fake_lr, fake_steps=args.fake_steps, init_unet=args.init_unet,
                       ode_weight=args.ode_weight, bank_count=args.bank, bank_file=args.bank_file,
                       ema_decay=args.ema_decay, gan_weight=args.gan_weight, gan_d_weight=args.gan_d_weight,
                       guidance=args.guidance, compile_mode=args.compile,
                       compile_cache=args.compile_cache, init_critic=args.init_critic,
                       three_object_weight=args.three_object_weight,
                       classifier_features=args.classifier_features, critic_warmup=args.critic_warmup,
                       judge_gan_weight=args.judge_gan_weight, judge_gan_lr=args.judge_gan_lr, seed=args.seed,
                       lr_warmup=args.lr_warmup, ema_from_init=args.ema_from_init, t_range=tuple(args.t_range),
                       draws=args.draws, anchor_weight=args.anchor_weight, anchor_every=args.anchor_every,
                       mismatch_weight=args.mismatch_weight), flush=True)


if __name__ == "__main__":
    main()
