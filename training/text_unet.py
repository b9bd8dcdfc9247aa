"""Latent UNet and text encoder, trained jointly (Rombach et al. 2022, eq. 2; Ho & Salimans 2022).

Why jointly rather than a contrastive small CLIP first: the caption language is a ~40-word
grammar, so the denoising loss alone teaches the encoder what the denoiser needs (objects,
attributes, word order for relations), and one stage spends the whole GPU budget on the one
model that is measured. 10% of captions are replaced by the empty prompt "" (the uncond for
classifier-free guidance). eps prediction, min-SNR-5 loss weighting (Hang et al. 2023), EMA.

    python -m training.text_unet --out DIR --seconds S [--device cuda]
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import Tensor, nn

from pipelines.text import reverse_words
from training.checkpoint import (
    EMA,
    Deadline,
    StageState,
    clipped_step,
    load_state,
    load_weights,
    save_state,
    save_weights,
    stage_parser,
)
from training.data import (
    CONTEXT_LENGTH,
    RELATIONS,
    Scene,
    SceneBatch,
    mirrored,
    render,
    sample_scenes,
    scenes_to_batch,
    tokenize,
)
from training.diffusion import add_noise, alphas_cumprod, ddim_sample
from training.judge import caption_accuracy
from training.models import Judge, build_text_encoder, build_unet, build_vae

STAGE = "text_unet"
CAPTION_DROPOUT = 0.1
MIN_SNR_GAMMA = 5.0
RELATION_HIGH_T = 500  # --relation-high-t draws from RELATION_HIGH_T..999
EMPTY_PROMPT = ""


def caption_tokens(texts: list[str], directions: int = 1) -> Tensor:
    """(B, 77) token ids, or with directions 2 (B, 154): the caption's, then its word-reversed
    caption's (pipelines.text.reverse_words; the served ClipTextEncoder's both_directions)."""
    tokens = tokenize(texts)
    if directions == 2:
        tokens = torch.cat((tokens, tokenize([reverse_words(t) for t in texts])), dim=1)
    return tokens


class TextUNet(nn.Module):
    """The two jointly trained modules, so one optimizer and one EMA cover both.

    text_directions 2: the UNet cross-attends to the caption's encoding followed by its
    word-reversed encoding (caption_tokens), so each object's tokens have seen the relation word
    in one of the two passes (the encoder is causal)."""

    def __init__(self, text_directions: int = 1) -> None:
        super().__init__()
        self.text_encoder = build_text_encoder()
        self.unet = build_unet()
        self.text_directions = text_directions

    def context(self, tokens: Tensor) -> Tensor:
        """Cross-attention context (B, 77 k, 128) from caption_tokens' (B, 77 k) ids, k = text_directions."""
        if tokens.shape[1] != CONTEXT_LENGTH * self.text_directions:
            raise ValueError(f"expected {CONTEXT_LENGTH * self.text_directions} token ids per caption "
                             f"(text_directions {self.text_directions}: training.text_unet.caption_tokens), got {tokens.shape[1]}")
        passes = tokens.view(tokens.shape[0], self.text_directions, CONTEXT_LENGTH).transpose(0, 1).reshape(-1, CONTEXT_LENGTH)
        hidden = self.text_encoder(passes).last_hidden_state  # (k B, 77, 128)
        return torch.cat(hidden.chunk(self.text_directions), dim=1)

    def eps(self, x: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        """eps prediction: x (B, 4, 16, 16), t (B,), tokens (B, 77 k) -> (B, 4, 16, 16)."""
        return self.unet(x, t, encoder_hidden_states=self.context(tokens)).sample


def load_frozen_vae(out: Path, device: torch.device) -> AutoencoderKL:
    """The trained autoencoder from its stage directory, frozen."""
    vae = build_vae().to(device)
    if not load_weights(vae, out / "autoencoder" / "vae.safetensors"):
        raise FileNotFoundError(f"{out / 'autoencoder' / 'vae.safetensors'} missing: train the autoencoder first")
    vae.requires_grad_(False)
    return vae.eval()


def load_frozen_teacher(out: Path, device: torch.device, text_directions: tuple[int, ...] = (1,)) -> TextUNet:
    """The trained text encoder + UNet (EMA weights) from its stage directory, frozen: the teacher
    of the students and the ControlNet. `text_directions`: the conditionings the caller can feed
    (the distillation and ControlNet stages encode captions with the teacher's text encoder
    directly, one direction); a teacher trained otherwise is refused rather than fed wrongly."""
    directions = int(load_state(out / STAGE).metrics.get("text_directions", 1))  # caption_tokens(texts, this)
    if directions not in text_directions:
        raise ValueError(f"the teacher in {out / STAGE} was trained with text_directions {directions}; this stage "
                         f"conditions it with {text_directions} only (see training.text_unet.caption_tokens)")
    teacher = TextUNet(directions).to(device)
    path = out / STAGE / "ema_text_unet.safetensors"
    if not load_weights(teacher, path):
        raise FileNotFoundError(f"{path} missing (the teacher): train it or `python -m training.export --import weights RUN`")
    teacher.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: Tensor, scaling: float, generator: torch.Generator | None) -> Tensor:
    """Images (B, 3, 64, 64) in [0, 1] -> scaled latents (B, 4, 16, 16), a posterior sample."""
    dist = vae.encode(images * 2 - 1).latent_dist
    noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device) if generator is not None else 0
    return (dist.mean + dist.std * noise) * scaling


@torch.no_grad()
def encode_pool(vae: AutoencoderKL, pool: SceneBatch, generator: torch.Generator, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """Render every scene of `pool` once (jitter and background from `generator`) and encode it:
    the unscaled posterior mean and std, fp16, (P, 4, 16, 16) each, in pool order."""
    cuda = pool.shape.device.type == "cuda"
    count = pool.shape.shape[0]
    means, stds = [], []
    with torch.autocast(pool.shape.device.type, dtype=torch.bfloat16, enabled=cuda):
        for start in range(0, count, chunk):
            rows = torch.arange(start, min(start + chunk, count), device=pool.shape.device)
            dist = vae.encode(render(pool.index(rows), generator) * 2 - 1).latent_dist
            means.append(dist.mean.half())
            stds.append(dist.std.half())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def generate(model: TextUNet, vae: AutoencoderKL, scaling: float, texts: list[str], guidance: float,
             steps: int, seed: int, device: torch.device) -> Tensor:
    """Images (B, 3, 64, 64) in [0, 1] by DDIM with classifier-free guidance (one pass for cond + uncond)."""
    alpha_bar = alphas_cumprod(device)
    tokens = caption_tokens(texts, model.text_directions).to(device)
    empty = caption_tokens([EMPTY_PROMPT] * len(texts), model.text_directions).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        text = model.context(torch.cat((tokens, empty)))

    def eps_fn(x: Tensor, t: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            both = model.unet(torch.cat((x, x)), torch.cat((t, t)), encoder_hidden_states=text).sample.float()
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn((len(texts), 4, 16, 16), generator=gen, device=device)
    latents = ddim_sample(eps_fn, noise, steps, alpha_bar)
    return (vae.decode(latents / scaling).sample.float().clamp(-1, 1) + 1) / 2


def evaluate(model: TextUNet, vae: AutoencoderKL, scaling: float, judge: Judge, count: int, device: torch.device,
             guidance: float = 4.0, steps: int = 25) -> dict[str, float]:
    """Whole-caption and per-attribute judge accuracy (DDIM, CFG w) on seen and held-out captions."""
    metrics: dict[str, float] = {}
    for split in ("train", "heldout"):
        scenes = sample_scenes(12345, count, split)
        captions = [s.caption for s in scenes]
        images = torch.cat([generate(model, vae, scaling, [c.text for c in captions[i : i + 256]], guidance, steps, 99 + i, device)
                            for i in range(0, count, 256)])
        acc, _ = caption_accuracy(judge, images, captions)
        name = "seen" if split == "train" else "heldout"
        metrics.update({f"ddim{steps}_w{guidance:g}_{name}_{k}": v for k, v in acc.items()})
    return metrics


def save_sample_grid(model: TextUNet, vae: AutoencoderKL, scaling: float, path: Path, device: torch.device) -> None:
    """A 4 x 4 grid of DDIM 25, w = 4 samples for fixed seen captions, with the captions in a text file."""
    from PIL import Image

    captions = [s.caption.text for s in sample_scenes(777, 16, "train")]
    images = generate(model, vae, scaling, captions, 4.0, 25, 0, device)  # (16, 3, 64, 64)
    grid = images.view(4, 4, 3, 64, 64).permute(0, 3, 1, 4, 2).reshape(256, 256, 3)
    Image.fromarray((grid * 255).round().byte().cpu().numpy()).save(path)
    path.with_suffix(".txt").write_text("\n".join(captions) + "\n")


def _snapshot(model: TextUNet, ema: EMA, directory: Path, state: StageState, elapsed: float) -> None:
    """The EMA weights (raw weights restored after) and the loss log, mid-run."""
    raw = [p.detach().clone() for p in model.parameters()]
    ema.copy_to(model)
    save_weights(model, directory / "ema_text_unet.safetensors")
    with torch.no_grad():
        for p, r in zip(model.parameters(), raw):
            p.copy_(r)
    save_state(directory, state, "text encoder + UNet: eps MSE")
    print(f"[text_unet] snapshot at step {state.step}, {elapsed:.0f} s", flush=True)


def draw_weights(scenes: list[Scene], boost: float, relations: tuple[str, ...] = RELATIONS) -> Tensor:
    """Each scene's weight in the training draw: `boost` for a caption stating one of `relations`
    between two objects, 1 for every other."""
    return torch.tensor([boost if s.caption.relation in relations else 1.0 for s in scenes])


def draw_timesteps(relation: Tensor, high_share: float, gen: torch.Generator) -> Tensor:
    """One training timestep per row, uniform over 0..999; for `high_share` of the rows flagged in
    `relation` (bool), uniform over RELATION_HIGH_T..999 instead."""
    t = torch.randint(0, 1000, relation.shape, generator=gen, device=relation.device)
    if high_share <= 0:
        return t
    high = relation & (torch.rand(relation.shape, generator=gen, device=relation.device) < high_share)
    return torch.where(high, torch.randint(RELATION_HIGH_T, 1000, relation.shape, generator=gen, device=relation.device), t)


def mirror_pool(scenes: list[Scene]) -> tuple[list[Scene], list[int]]:
    """The pool of train(mirror_pairs=True): each relation scene followed by its mirror image
    (data.mirrored), and each row's partner (its mirror, or itself for a scene without a relation)."""
    pool: list[Scene] = []
    partners: list[int] = []
    for scene in scenes:
        i = len(pool)
        if scene.caption.relation is None:
            pool.append(scene)
            partners.append(i)
        else:
            pool += [scene, mirrored(scene)]
            partners += [i + 1, i]
    return pool, partners


def train(out: Path, seconds: float, device: torch.device, batch: int | None = None, lr: float = 3e-4,
          pool_size: int = 200_000, eval_count: int = 256, compile_forward: bool = False,
          snapshot_s: float = 0.0, freeze_text_encoder: bool = False, relation_boost: float = 1.0,
          text_directions: int | None = None, mirror_pairs: bool = False,
          relation_high_t: float = 0.0, boost_relations: tuple[str, ...] = RELATIONS) -> dict[str, float]:
    """Train (or resume) the text encoder + UNet for `seconds` of wall clock.

    freeze_text_encoder trains the UNet alone and keeps the text encoder exactly the saved EMA's
    (the shipped one after `training.export --import`): the students, the ControlNet and the
    classifier read that encoder's embeddings, so they stay valid for the improved UNet.
    relation_boost > 1 draws scenes whose caption states a relation between two objects (one of
    boost_relations: all four by default) that many times as often as the others
    (training/results/analysis/position_breakdown.md: the call-4 UNet drew relations at chance
    while the encoder carries them).

    mirror_pairs puts each relation scene's mirror image (data.mirrored: the relation word swapped,
    the layout mirrored) in the pool beside it, and trains on the two together: half the batch is
    drawn, the other half is their partners (a scene without a relation is its own), with the same
    timestep, noise and caption dropout. Under the same noise, only the relation word then tells
    the pair's targets apart; the shipped UNet's layout ignores that word (unchanged by a swap for
    0.93 of seen captions: training/results/analysis/relation_swap_bundled.md).

    relation_high_t P draws the timestep of that share of the relation scenes from the noisier half
    of the schedule, RELATION_HIGH_T..999 (their partners follow), the rest uniform as for every
    other scene. The layout is settled at high noise, where the eps loss weighs an error in the
    clean image by the SNR (0.38 at t = 500, 0.04 at t = 800), so a wrong layout costs little
    there; the draw gives the relation scenes more of those steps. Calls 11-12 (0.75): seen
    accuracy 0.775 -> 0.850, where mirror pairs alone stayed at 0.771.

    text_directions 2 conditions the UNet on the caption's encoding and its word-reversed one
    (TextUNet); None keeps what the stage was trained with (1 when new). Switching a trained UNet
    from 1 to 2 continues it with the extra context (best with the encoder frozen); the choice is
    saved in the state and export writes it into model_index.json for serving.

    compile_forward wraps the training forward in torch.compile (about a minute of compile,
    then ~20% faster steps on an H200: worth it for runs over ~8 minutes). snapshot_s > 0 saves
    the EMA weights and state every that many seconds, so a run cut short keeps its progress.
    """
    deadline = Deadline(seconds)
    batch = batch or (512 if device.type == "cuda" else 8)
    directory = out / STAGE
    cuda = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    state = load_state(directory)
    if text_directions is None:
        text_directions = int(state.metrics.get("text_directions", 1))
    if text_directions not in (1, 2):
        raise ValueError(f"text_directions must be 1 or 2, got {text_directions}")
    state.metrics["text_directions"] = text_directions
    model = TextUNet(text_directions).to(device)
    if load_weights(model, directory / "ema_text_unet.safetensors"):
        ema = EMA(model, decay=0.999)  # the shadow starts at the saved EMA
        ema.updates = state.step
        raw = TextUNet()
        if load_weights(raw, directory / "text_unet.safetensors"):  # raw weights where kept, else EMA
            model.unet.load_state_dict(raw.unet.state_dict())
            if not freeze_text_encoder:  # a frozen encoder stays the EMA's, which the shadow then keeps exactly
                model.text_encoder.load_state_dict(raw.text_encoder.state_dict())
    else:
        load_weights(model, directory / "text_unet.safetensors")
        ema = EMA(model, decay=0.999)
    model.text_encoder.requires_grad_(not freeze_text_encoder)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=lr, betas=(0.9, 0.99), weight_decay=0.01, fused=cuda)
    if (directory / "optimizer.pt").exists():
        saved = torch.load(directory / "optimizer.pt", map_location=device)
        if len(saved["param_groups"][0]["params"]) == len(trained):  # not when the encoder was frozen or thawed
            opt.load_state_dict(saved)
    state.metrics["text_encoder_frozen"] = freeze_text_encoder  # type: ignore[assignment]
    vae = load_frozen_vae(out, device)
    gen = torch.Generator(device=device).manual_seed(3000 + state.step)
    if "scaling_factor" not in state.metrics:
        probe = scenes_to_batch(sample_scenes(4, 2048 if cuda else 64, "train")).to(device)
        latents = encode_latents(vae, render(probe, gen), 1.0, gen)
        state.metrics["scaling_factor"] = float(1.0 / latents.float().std())
    scaling = float(state.metrics["scaling_factor"])

    scenes = sample_scenes(state.step, pool_size if cuda or pool_size != 200_000 else 1_000, "train")  # CPU: 1,000 unless asked
    scenes, partners = mirror_pool(scenes) if mirror_pairs else (scenes, list(range(len(scenes))))
    partner = torch.tensor(partners, device=device)
    state.metrics["mirror_pairs"] = mirror_pairs  # type: ignore[assignment]
    pool = scenes_to_batch(scenes).to(device)
    texts = [s.caption.text for s in scenes]
    draw = draw_weights(scenes, relation_boost, boost_relations).to(device)
    state.metrics["relation_boost"] = relation_boost
    state.metrics["boost_relations"] = list(boost_relations)  # type: ignore[assignment]
    is_relation = torch.tensor([s.caption.relation is not None for s in scenes], device=device)
    state.metrics["relation_high_t"] = relation_high_t
    tokens = caption_tokens(texts, text_directions).to(device)  # (P, 77 k)
    # Each scene rendered once (random jitter and background) and encoded once: posterior mean
    # and std kept in fp16, a fresh posterior sample drawn per step. Saves the render and the
    # encoder (as costly per image as the UNet forward) from every step.
    latent_mean, latent_std = encode_pool(vae, pool, gen)  # (P, 4, 16, 16) each
    empty = caption_tokens([EMPTY_PROMPT], text_directions).to(device)  # (1, 77 k)
    alpha_bar = alphas_cumprod(device)
    snr = (alpha_bar / (1 - alpha_bar)).float()
    weight_by_t = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr  # min-SNR-gamma for eps prediction

    eval_reserve = 30.0 if cuda else 0.3 * seconds
    start_step = state.step
    forward = torch.compile(model.eps) if compile_forward else model.eps
    last_snapshot = deadline.elapsed()
    running = torch.zeros((), device=device)
    model.train()
    if freeze_text_encoder:
        model.text_encoder.eval()
    while deadline.left() > eval_reserve:
        drawn = batch // 2 if mirror_pairs else batch
        if relation_boost == 1.0:
            rows = torch.randint(0, pool.shape.shape[0], (drawn,), generator=gen, device=device)
        else:
            rows = torch.multinomial(draw, drawn, replacement=True, generator=gen)
        pairs = 2 if mirror_pairs else 1  # the partners share the drawn rows' timestep, noise and dropout
        rows = torch.cat([rows, partner[rows]]) if mirror_pairs else rows
        posterior_noise = torch.randn((rows.shape[0], 4, 16, 16), generator=gen, device=device)
        latents = (latent_mean[rows].float() + latent_std[rows].float() * posterior_noise) * scaling
        batch_tokens = tokens[rows]
        drop = (torch.rand((drawn,), generator=gen, device=device) < CAPTION_DROPOUT).repeat(pairs)
        batch_tokens = torch.where(drop.view(-1, 1), empty.expand_as(batch_tokens), batch_tokens)
        t = draw_timesteps(is_relation[rows[:drawn]], relation_high_t, gen).repeat(pairs)
        eps = torch.randn((drawn, *latents.shape[1:]), generator=gen, device=device).repeat(pairs, 1, 1, 1)
        x_t = add_noise(latents, eps, t, alpha_bar)
        warm = min(1.0, (state.step + 1) / 300) if start_step == 0 else min(1.0, (state.step - start_step + 1) / 50)
        # each run is one warm-restart cycle: warmup, then cosine decay to lr/10 by the run's end
        frac = min(1.0, deadline.elapsed() / max(1.0, seconds - eval_reserve))
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            pred = forward(x_t, t, batch_tokens)
        per_sample = ((pred.float() - eps) ** 2).mean(dim=(1, 2, 3))
        loss = (weight_by_t[t] * per_sample).mean()
        clipped_step(opt, loss, trained)
        ema.update(model)
        state.step += 1
        running += per_sample.mean().detach()
        if state.step % 20 == 0:
            state.log("eps_mse", (running / 20).item())
            running.zero_()
            if snapshot_s > 0 and deadline.elapsed() - last_snapshot > snapshot_s:
                _snapshot(model, ema, directory, state, deadline.elapsed())
                last_snapshot = deadline.elapsed()
    state.elapsed_s += deadline.elapsed()
    state.metrics["steps_this_run"] = state.step - start_step
    save_weights(model, directory / "text_unet.safetensors")
    ema.copy_to(model)
    save_weights(model, directory / "ema_text_unet.safetensors")
    torch.save(opt.state_dict(), directory / "optimizer.pt")
    model.eval()
    metrics: dict[str, float] = {}
    judge = Judge().to(device)
    if load_weights(judge, out / "judge" / "judge.safetensors"):
        judge.eval()
        metrics = evaluate(model, vae, scaling, judge, eval_count if cuda else 8, device, steps=25 if cuda else 4)
        state.metrics.update(metrics)
    save_sample_grid(model, vae, scaling, directory / "samples.png", device)
    save_state(directory, state, "text encoder + UNet: eps MSE")
    return metrics


def main() -> None:
    parser = stage_parser(__doc__.splitlines()[0], "default: the GPU batch, or 8 on CPU")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    parser.add_argument("--snapshot-s", type=float, default=0.0, help="save EMA weights every S seconds")
    parser.add_argument("--freeze-text-encoder", action="store_true",
                        help="train the UNet alone; the text encoder stays the saved EMA's (students stay valid)")
    parser.add_argument("--relation-boost", type=float, default=1.0,
                        help="draw captions with a two-object relation this many times as often")
    parser.add_argument("--pool-size", type=int, default=200_000, help="scenes rendered and encoded once (CPU default: 1,000)")
    parser.add_argument("--mirror-pairs", action="store_true",
                        help="train each relation scene beside its mirror image (relation word swapped), same noise and timestep")
    parser.add_argument("--boost-relations", nargs="+", choices=RELATIONS, default=list(RELATIONS),
                        help="the relations --relation-boost draws more often (default: all)")
    parser.add_argument("--relation-high-t", type=float, default=0.0,
                        help=f"share of relation scenes whose timestep is drawn from {RELATION_HIGH_T}..999")
    parser.add_argument("--text-directions", type=int, choices=(1, 2), default=None,
                        help="2: condition on the caption's and its word-reversed caption's encodings (default: the stage's)")
    args = parser.parse_args()
    metrics = train(args.out, args.seconds, torch.device(args.device), batch=args.batch, lr=args.lr,
                    compile_forward=args.compile, snapshot_s=args.snapshot_s, freeze_text_encoder=args.freeze_text_encoder,
                    relation_boost=args.relation_boost, text_directions=args.text_directions, pool_size=args.pool_size,
                    mirror_pairs=args.mirror_pairs, relation_high_t=args.relation_high_t,
                    boost_relations=tuple(args.boost_relations))
    print(STAGE, metrics, flush=True)


if __name__ == "__main__":
    main()
