"""The quality cost of a decoder lever, measured on the bundled model: judge accuracy and FID of the
same latents decoded two ways.

Comparisons (`--compare`):
- "tiny" (fast mode): the KL decoder vs the distilled AutoencoderTiny (weights/bundled_tiny_vae).
- "bf16" (settings.vae_cpu_bf16): the KL decoder in float32 vs the same decoder in bfloat16
  on the CPU (pipelines.accel.CpuBf16Decoder); CPU and a float32 model only.

The teacher (bundled, DDIM 25 at guidance 4) and its one-step student (bundled-turbo, sampler
"turbo", 1 step, guidance 1) each generate the seen and held-out caption sets with the same seeds
(server.commands.eval) once per decoder: once decoded by model.vae as loaded, once by the other.
Generation is seeded, so both decoders get the same latents; the differences in whole-caption
accuracy and judge-space FID are the lever's quality cost. Also, per model, the two decoders' images
of the first `--batch` seen captions' latents compared pixel by pixel, and the decode alone for both
decoders at DECODE_BATCHES (median of DECODE_REPS), a figure of the machine it runs on.

    python -m bench.decoder_quality [--compare tiny|bf16] [--device cpu] [--captions 256] [--out JSON]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.timing import cpu_model, time_call

if TYPE_CHECKING:
    from pipelines.model import LatentAutoencoder

TINY_VAE = Path("weights/bundled_tiny_vae")
COMPARISONS = ("tiny", "bf16")
# (model id, sampler, steps, guidance): the teacher as served by default, and its one-step student
MODELS: tuple[tuple[str, str, int, float], ...] = (
    ("bundled", "ddim", 25, 4.0),
    ("bundled-turbo", "turbo", 1, 1.0),
)
DECODE_BATCHES = (1, 16, 64)
DECODE_REPS = 7
SIZE = 64  # pixels per side, as server.commands.eval generates


@torch.no_grad()
def decode_timings(
    decoders: dict[str, LatentAutoencoder],
    latent_shape: tuple[int, int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, dict[str, float]]:
    """{decoder name: {"batch_1": ms, ...}} for the same random scaled latents (B, *latent_shape)."""
    generator = torch.Generator("cpu").manual_seed(0)
    timings: dict[str, dict[str, float]] = {name: {} for name in decoders}
    for batch in DECODE_BATCHES:
        latents = torch.randn(batch, *latent_shape, generator=generator).to(device, dtype)
        for name, vae in decoders.items():
            ms = time_call(partial(vae.decode, latents), warmup=1, repeats=DECODE_REPS) * 1e3
            timings[name][f"batch_{batch}"] = round(ms, 2)
    return timings


@torch.no_grad()
def image_difference(model: Any, decoders: dict[str, LatentAutoencoder], prompts: list[str],
                     sampler: str, steps: int, guidance: float) -> dict[str, float]:
    """The two decoders' images of the same sampled latents (the prompts', seed 0) on [0, 1]: the largest and
    mean absolute difference, and the share of 8-bit pixel values that differ."""
    from server.commands.eval import denoise, encode_prompts, initial_noise

    gc = encode_prompts(model, prompts, guidance)
    x, sigmas, generator = initial_noise(model, len(prompts), sampler, steps, seed=0)
    x = denoise(model, x, sigmas, generator, sampler, gc)
    latents = model.denoiser.to_decoder_input(x, float(sigmas[-1]))
    first, second = (vae.decode(latents).float().cpu() for vae in decoders.values())
    diff = (first - second).abs()
    changed = (first * 255).round() != (second * 255).round()
    return {"images": len(prompts), "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "pixel_values_changed": float(changed.float().mean())}


def tiny_decoders(model: Any, dev: torch.device, dtype: torch.dtype, tiny_path: Path) -> dict[str, LatentAutoencoder]:
    """{"kl": the model's KL decoder, "tiny": the AutoencoderTiny at tiny_path}."""
    from diffusers import AutoencoderTiny

    from pipelines.vae import TinyAutoencoder

    tiny = TinyAutoencoder(AutoencoderTiny.from_pretrained(tiny_path, torch_dtype=dtype).to(dev))
    return {"kl": model.vae, "tiny": tiny}


def cpu_bf16_decoders(model: Any) -> dict[str, LatentAutoencoder]:
    """{"fp32": the model's KL decoder, "bf16": a copy of it run by pipelines.accel.CpuBf16Decoder}."""
    from pipelines.accel import CpuBf16Decoder

    bf16 = copy.deepcopy(model.vae)
    bf16.vae.decoder = CpuBf16Decoder(bf16.vae.decoder)
    return {"fp32": model.vae, "bf16": bf16}


def decoder_quality(compare: str, device: str, captions: int, batch: int, tiny_path: Path) -> dict:
    """{"records": [...], "summary": [...], "image_difference": {...}, "decode_ms": {...}, "seconds": s}: eval
    records per model x decoder x split, the two decoders' deltas, and the decode-alone timings."""
    from pipelines.loading import load_from_manifest
    from pipelines.manifest import default_weights_root
    from server.commands.eval import CAPTION_SEED, Config, evaluate, load_judge
    from training.data import sample_scenes

    if compare not in COMPARISONS:
        raise ValueError(f"compare must be one of {', '.join(COMPARISONS)}, got {compare!r}")
    start = time.perf_counter()
    dev = torch.device(device)
    if compare == "bf16" and dev.type != "cpu":
        raise ValueError(f"the bf16 comparison is the CPU's decoder lever: --device cpu, not {device!r}")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    judge = load_judge(default_weights_root(), dev)
    # eval's sample grids stay out of the results
    scratch = Path(tempfile.mkdtemp(prefix="darkroom_decoder_quality_"))
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    result: dict = {
        "comparison": compare,
        "device": dev.type,
        "card": card,
        "dtype": str(dtype).removeprefix("torch."),
        "captions": captions,
        "records": [],
        "summary": [],
        "image_difference": {},
    }
    if compare == "tiny":
        result["tiny_vae"] = str(tiny_path)
    else:
        result["cpu"] = cpu_model()
        result["threads"] = torch.get_num_threads()
    prompts = [s.caption.text for s in sample_scenes(CAPTION_SEED, batch, "train")]
    for model_id, sampler, steps, guidance in MODELS:
        model = load_from_manifest(model_id, device=dev, dtype=dtype)
        decoders = tiny_decoders(model, dev, dtype, tiny_path) if compare == "tiny" else cpu_bf16_decoders(model)
        reference, lever = decoders  # the names: as loaded, then the lever
        configs = [Config(sampler, steps, guidance, ("seen", "heldout"))]
        loaded = model.vae
        pair: dict[tuple[str, str], dict[str, Any]] = {}  # (decoder, split) -> eval record
        for decoder, vae in decoders.items():
            model.vae = vae
            records = evaluate(
                model, judge, configs, captions, batch, scratch, 1e9, label=f"{model_id}_{decoder}_"
            )
            for record in records:
                record["decoder"] = decoder
                pair[decoder, str(record["split"])] = record
            result["records"] += records
        model.vae = loaded
        result["image_difference"][model_id] = image_difference(model, decoders, prompts, sampler, steps, guidance)
        for split in ("seen", "heldout"):
            a, b = pair[reference, split], pair[lever, split]
            result["summary"].append(
                {
                    "model": model_id,
                    "sampler": sampler,
                    "steps": steps,
                    "guidance": guidance,
                    "split": split,
                    f"acc_caption_{reference}": a["acc_caption"],
                    f"acc_caption_{lever}": b["acc_caption"],
                    "acc_caption_delta": b["acc_caption"] - a["acc_caption"],
                    f"fid_judge_{reference}": a["fid_judge"],
                    f"fid_judge_{lever}": b["fid_judge"],
                }
            )
    spec = model.family
    latent_shape = (spec.latent_channels, SIZE // spec.latent_factor, SIZE // spec.latent_factor)
    result["decode_ms"] = decode_timings(decoders, latent_shape, dev, dtype)
    result["decode_note"] = (
        f"decode alone, {SIZE}x{SIZE} images, median of {DECODE_REPS} calls after a warm-up, "
        f"on {result.get('cpu', card)} ({torch.get_num_threads()} threads): a figure of this machine"
    )
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=COMPARISONS, default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--captions", type=int, default=256, help="per split (seen, held-out)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--tiny-vae", type=Path, default=TINY_VAE, help="the AutoencoderTiny folder (--compare tiny)"
    )
    parser.add_argument("--out", default=None, help="default: bench/results/cpu_<compare>_decoder_quality.json")
    args = parser.parse_args()
    out = args.out or f"bench/results/cpu_{args.compare}_decoder_quality.json"
    result = decoder_quality(args.compare, args.device, args.captions, args.batch, args.tiny_vae)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    reference, lever = result["decode_ms"]
    print(f"\nwrote {out} in {result['seconds']} s")
    print(f"model          split    caption acc {reference} / {lever} (delta)   FID (judge) {reference} / {lever}")
    for row in result["summary"]:
        print(
            f"{row['model']:14s} {row['split']:8s} {row[f'acc_caption_{reference}']:.3f} / "
            f"{row[f'acc_caption_{lever}']:.3f} ({row['acc_caption_delta']:+.3f})       "
            f"{row[f'fid_judge_{reference}']:.3f} / {row[f'fid_judge_{lever}']:.3f}"
        )
    for model_id, diff in result["image_difference"].items():
        print(f"{model_id}: images of the same latents differ by at most {diff['max_abs']:.4f} "
              f"(mean {diff['mean_abs']:.5f}; {diff['pixel_values_changed']:.1%} of 8-bit values)")
    for name, by_batch in result["decode_ms"].items():
        print(f"decode {name:4s}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in by_batch.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
