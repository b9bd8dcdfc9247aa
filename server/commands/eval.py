"""`darkroom eval`: judge accuracy and judge-space FID of a model over samplers x guidance scales.

For each (sampler, steps, guidance w) the model generates one image per held-out-seed caption
through the serving path (pipelines.samplers, the model's denoiser, CFG in one forward pass),
batched over captions. The judge (weights/judge) scores each image against its caption (per
attribute and whole caption; training.judge.score_caption) and embeds it; FID is the Frechet
distance between Gaussian fits of judge features of generated images and of real renders of
the same captions (Heusel et al. 2017, eq. 6, in the judge's 256-d feature space). "spread" is
trace(Cov_gen) / trace(Cov_real): below 1 means less diverse than the data.

Outputs in --out: eval.json (one record per configuration), eval.md (tables), grid_*.png.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from pipelines.conditioning import GuidedConditioning
    from training.models import Judge

# (sampler, steps): the grid, cheapest-to-explain first
FULL_GRID: tuple[tuple[str, int], ...] = (
    ("ddim", 25), ("ddim", 10), ("ddim", 50), ("dpmpp_2m", 10), ("heun", 25), ("ddpm", 100), ("pc", 50),
)
FULL_GUIDANCE: tuple[float, ...] = (1.0, 2.0, 4.0, 7.0)
QUICK_GRID: tuple[tuple[str, int], ...] = (("ddim", 25), ("ddim", 10))
QUICK_GUIDANCE: tuple[float, ...] = (1.0, 4.0)
CAPTION_SEED = 2024
SIZE = 64


@dataclass(frozen=True)
class Config:
    """One evaluated configuration; splits lists which caption sets it runs on."""

    sampler: str
    steps: int
    guidance: float
    splits: tuple[str, ...]
    guidance_interval: tuple[float, float] | None = None  # (sigma_lo, sigma_hi]: guide only there


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) for features (N, D) (Heusel et al. 2017)."""
    a, b = a.double().cpu(), b.double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle)


def spread(generated: Tensor, real: Tensor) -> float:
    """trace(Cov_gen) / trace(Cov_real): relative diversity in judge-feature space."""
    return float(torch.trace(torch.cov(generated.double().T)) / torch.trace(torch.cov(real.double().T)))


@torch.no_grad()
def encode_prompts(model: object, prompts: list[str], guidance: float) -> GuidedConditioning:
    """The prompts' conditioning, one row each, with the empty negative prompt's rows when guidance > 1 (one encoder
    pass for both). An unguided call (w <= 1) has no uncond pass, so it encodes no negative."""
    from pipelines.conditioning import GuidedConditioning
    from pipelines.text import encode_with_negative

    n, device = len(prompts), model.device  # type: ignore[attr-defined]
    if guidance <= 1.0:
        cond, _ = model.text_encoder.encode(prompts, size=(SIZE, SIZE))  # type: ignore[attr-defined]
        uncond = None
    else:
        cond, negative, _ = encode_with_negative(model.text_encoder, prompts, [""] * n, size=(SIZE, SIZE))  # type: ignore[attr-defined]
        uncond = negative.to(device)
    return GuidedConditioning(cond=cond.to(device), uncond=uncond, guidance_scale=torch.full((n,), max(1.0, guidance)))


@torch.no_grad()
def initial_noise(model: object, n: int, sampler: str, steps: int, seed: int) -> tuple[Tensor, Tensor, torch.Generator]:
    """(x at the first sigma, the sampler's sigmas, the seeded CPU generator that also draws the sampler's noise)."""
    from pipelines.conditioning import to_device
    from pipelines.text_to_image import sampling_sigmas

    spec = model.family  # type: ignore[attr-defined]
    sigmas = sampling_sigmas(model, sampler, steps)  # type: ignore[arg-type]
    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (n, spec.latent_channels, SIZE // spec.latent_factor, SIZE // spec.latent_factor)
    eps = to_device(torch.randn(shape, generator=generator, dtype=torch.float32), model.device)  # type: ignore[attr-defined]
    return eps * model.denoiser.prior_scale(float(sigmas[0])), sigmas, generator  # type: ignore[attr-defined]


@torch.no_grad()
def denoise(model: object, x: Tensor, sigmas: Tensor, generator: torch.Generator, sampler: str,
            gc: GuidedConditioning, classifier: torch.nn.Module | None = None,
            guidance_interval: tuple[float, float] | None = None) -> Tensor:
    """The sampler's run from x over sigmas, each denoiser call guided by gc (CFG, and the classifier when gc
    carries its scales and labels)."""
    from dataclasses import replace

    from pipelines.guidance import cfg, classifier_guidance, in_guidance_interval
    from pipelines.samplers import make_sampler, run, seeded_noise

    guided = cfg(model.denoiser)  # type: ignore[attr-defined]
    if classifier is not None and gc.classifier_labels is not None:
        guided = classifier_guidance(guided, classifier)

    def call(x_now: Tensor, sigma_rows: Tensor) -> Tensor:
        if guidance_interval is None:
            return guided(x_now, sigma_rows, gc)
        guide = in_guidance_interval(sigma_rows.cpu(), guidance_interval[0], guidance_interval[1])
        return guided(x_now, sigma_rows, replace(gc, guide=guide))

    return run(make_sampler(sampler, x, sigmas, seeded_noise(x, generator)), call)


@torch.no_grad()
def decode(model: object, x: Tensor, sigmas: Tensor) -> Tensor:
    """Images (N, 3, H, W) in [0, 1] from the sampler's last x."""
    latents = model.denoiser.to_decoder_input(x, float(sigmas[-1]))  # type: ignore[attr-defined]
    return model.vae.decode(latents).float().clamp(0, 1)  # type: ignore[attr-defined]


@torch.no_grad()
def generate(model: object, prompts: list[str], sampler: str, steps: int, guidance: float, seed: int,
             classifier: torch.nn.Module | None = None, classifier_scale: float = 0.0,
             classifier_labels: Tensor | None = None, guidance_interval: tuple[float, float] | None = None) -> Tensor:
    """Images (N, 3, 64, 64) in [0, 1] for many prompts at once, exactly as text_to_image draws one
    (seeded CPU generator, prior noise, CFG with the empty negative prompt, the sampler's sigmas,
    the guidance interval); with a classifier, x0 is also shifted by
    classifier_scale * sigma^2 * grad log p(labels | x). Four phases: encode_prompts, initial_noise,
    denoise, decode (bench/phases.py times each alone)."""
    from dataclasses import replace

    gc = encode_prompts(model, prompts, guidance)
    if classifier is not None and classifier_labels is not None:
        gc = replace(gc, classifier_scale=torch.full((len(prompts),), classifier_scale),
                     classifier_labels=classifier_labels)
    x, sigmas, generator = initial_noise(model, len(prompts), sampler, steps, seed)
    x = denoise(model, x, sigmas, generator, sampler, gc, classifier, guidance_interval)
    return decode(model, x, sigmas)


def _grid_png(images: Tensor, path: Path, columns: int = 8) -> None:
    """Save images (N, 3, H, W) in [0, 1] as one PNG grid."""
    from PIL import Image

    n, _, h, w = images.shape
    rows = (n + columns - 1) // columns
    canvas = torch.ones(3, rows * h, columns * w)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = images[i].cpu()
    Image.fromarray((canvas.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)


def plan(quick: bool) -> list[Config]:
    """The configurations in priority order (a time budget cuts the tail): the DDIM 25 row on both
    caption sets first, then every sampler at w = 4, then the rest of the grid. The full grid runs
    every cell on the seen and the held-out captions; the quick one the extra cells on seen only."""
    grid, scales = (QUICK_GRID, QUICK_GUIDANCE) if quick else (FULL_GRID, FULL_GUIDANCE)
    both: tuple[str, ...] = ("seen", "heldout")
    rest = ("seen",) if quick else both
    configs = [Config("ddim", 25, w, both) for w in scales]
    configs += [Config(s, k, 4.0, rest) for s, k in grid if (s, k) != ("ddim", 25)]
    configs += [Config(s, k, w, rest) for s, k in grid if (s, k) != ("ddim", 25) for w in scales if w != 4.0]
    return configs


def evaluate(model: object, judge: Judge, configs: list[Config], captions: int, batch: int,
             out: Path, budget_s: float, label: str = "") -> list[dict[str, object]]:
    """Run `configs` until the budget is spent; returns one record per (config, split)."""
    from training.data import render, sample_scenes, scenes_to_batch
    from training.judge import caption_accuracy

    device = model.device  # type: ignore[attr-defined]
    judge_device = next(judge.parameters()).device
    start = time.monotonic()
    sets = {}
    for split, name in (("train", "seen"), ("heldout", "heldout")):
        scenes = sample_scenes(CAPTION_SEED, captions, split)
        real = render(scenes_to_batch(scenes).to(judge_device), torch.Generator(device=judge_device).manual_seed(CAPTION_SEED))
        _, real_features = caption_accuracy(judge, real, [s.caption for s in scenes])
        sets[name] = (scenes, real_features)
    records: list[dict[str, object]] = []
    for config in configs:
        for split in config.splits:
            if time.monotonic() - start > budget_s:
                print(f"[eval] budget of {budget_s:.0f} s spent; stopping before {config}", flush=True)
                return records
            scenes, real_features = sets[split]
            prompts = [s.caption.text for s in scenes]
            images = []
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.monotonic()
            for i in range(0, len(prompts), batch):
                images.append(generate(model, prompts[i : i + batch], config.sampler, config.steps, config.guidance, seed=i,
                                   guidance_interval=config.guidance_interval).to(judge_device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.monotonic() - t0
            generated = torch.cat(images)
            accuracy, features = caption_accuracy(judge, generated, [s.caption for s in scenes])
            record: dict[str, object] = {
                "model": label, "sampler": config.sampler, "steps": config.steps, "guidance": config.guidance,
                **({"guidance_interval": list(config.guidance_interval)} if config.guidance_interval else {}),
                "split": split, "captions": len(prompts), "fid_judge": frechet_distance(features, real_features),
                "spread": spread(features, real_features), "seconds_per_image_batched": seconds / len(prompts),
                **{f"acc_{k}": v for k, v in accuracy.items()},
            }
            records.append(record)
            print(json.dumps(record), flush=True)
            if split == "seen" and config.sampler == "ddim" and config.steps == 25 or config.sampler in ("lcm", "onestep"):
                _grid_png(generated[:16], out / f"grid_{label}{config.sampler}{config.steps}_w{config.guidance:g}_{split}.png")
    return records


def markdown(records: list[dict[str, object]]) -> str:
    """Tables: DDIM 25 by guidance (seen / held-out), and every sampler x guidance (seen)."""
    lines = ["| model | sampler | steps | w | split | caption acc | colour | shape | size | position | count | FID (judge) | spread |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['model'] or 'bundled'} | {r['sampler']} | {r['steps']} | {r['guidance']:g} | {r['split']} | {r['acc_caption']:.3f} | "
            f"{r['acc_colour']:.3f} | {r['acc_shape']:.3f} | {r.get('acc_size', float('nan')):.3f} | {r.get('acc_position', float('nan')):.3f} | "
            f"{r['acc_count']:.3f} | {r['fid_judge']:.2f} | {r['spread']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def load_judge(weights_root: Path, device: torch.device) -> Judge:
    """The judge from <weights root>/judge/judge.safetensors."""
    from training.checkpoint import load_weights
    from training.models import Judge

    judge = Judge().to(device)
    path = weights_root / "judge" / "judge.safetensors"
    if not load_weights(judge, path):
        raise FileNotFoundError(f"judge weights missing: {path} (train with python -m training.train_all)")
    return judge.eval()


def main(args: argparse.Namespace) -> int:
    """Evaluate one model (and optional students) and write eval.json / eval.md / grids."""
    from pipelines.loading import load_from_manifest
    from pipelines.manifest import default_weights_root

    device = torch.device(getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights_root = default_weights_root()
    judge = load_judge(weights_root, device)
    captions = args.captions or (32 if args.quick else 512)
    batch = 512 if device.type == "cuda" else 16
    budget_s = float(getattr(args, "seconds", None) or 1e9)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    start = time.monotonic()
    model = load_from_manifest(args.model, args.manifest, device=device, dtype=dtype)
    records = evaluate(model, judge, plan(args.quick), captions, batch, out, budget_s * 0.8, label="")
    for student in getattr(args, "students", None) or []:
        model = load_from_manifest(student, args.manifest, device=device, dtype=dtype)
        sampler = model.family.default_sampler
        configs = [Config(sampler, k, 1.0, ("seen", "heldout")) for k in ((1, 2, 4) if sampler == "lcm" else (1,))]
        left = budget_s - (time.monotonic() - start)
        records += evaluate(model, judge, configs, captions, batch, out, left, label=f"{student}_")
    (out / "eval.json").write_text(json.dumps({"device": str(device), "card": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                                               "captions": captions, "records": records}, indent=1) + "\n")
    (out / "eval.md").write_text(markdown(records))
    print(markdown(records))
    return 0
