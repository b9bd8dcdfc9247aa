"""The quality cost of the tiny decoder (fast mode), measured on the bundled model: judge accuracy
and FID with the KL decoder vs the distilled AutoencoderTiny (weights/bundled_tiny_vae).

The teacher (bundled, DDIM 25 at guidance 4) and its one-step student (bundled-turbo, sampler
"turbo", 1 step, guidance 1) each generate the seen and held-out caption sets with the same seeds
(server.commands.eval) twice: once decoded by model.vae as loaded (the KL decoder), once by
pipelines.vae.TinyAutoencoder. Generation is seeded, so both decoders get the same latents; the
differences in whole-caption accuracy and judge-space FID are the lever's quality cost.
Also the decode alone for both decoders at batch 1 and 64 (median of DECODE_REPS), a figure of
the machine it runs on.

    python -m bench.tiny_decoder_quality [--device cpu] [--captions 256] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from pipelines.model import LatentAutoencoder

TINY_VAE = Path("weights/bundled_tiny_vae")
# (model id, sampler, steps, guidance): the teacher as served by default, and its one-step student
MODELS: tuple[tuple[str, str, int, float], ...] = (
    ("bundled", "ddim", 25, 4.0),
    ("bundled-turbo", "turbo", 1, 1.0),
)
DECODE_BATCHES = (1, 64)
DECODE_REPS = 7
SIZE = 64  # pixels per side, as server.commands.eval generates


def decode_ms(decode: Callable[[Tensor], Tensor], latents: Tensor, reps: int) -> float:
    """Median wall time (ms) of decode(latents) over `reps` calls, after one warm-up call."""
    cuda = latents.device.type == "cuda"
    times = []
    for rep in range(reps + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        decode(latents)
        if cuda:
            torch.cuda.synchronize()
        if rep > 0:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def decode_timings(
    kl: LatentAutoencoder,
    tiny: LatentAutoencoder,
    latent_shape: tuple[int, int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, dict[str, float]]:
    """{"kl" | "tiny": {"batch_1": ms, "batch_64": ms}} for the same random scaled latents
    (B, *latent_shape)."""
    generator = torch.Generator("cpu").manual_seed(0)
    timings: dict[str, dict[str, float]] = {"kl": {}, "tiny": {}}
    for batch in DECODE_BATCHES:
        latents = torch.randn(batch, *latent_shape, generator=generator).to(device, dtype)
        for name, vae in (("kl", kl), ("tiny", tiny)):
            timings[name][f"batch_{batch}"] = round(decode_ms(vae.decode, latents, DECODE_REPS), 2)
    return timings


def tiny_decoder_quality(device: str, captions: int, batch: int, tiny_path: Path) -> dict:
    """{"records": [...], "summary": [...], "decode_ms": {...}, "seconds": s}: eval records per
    model x decoder x split, their KL-vs-tiny deltas, and the decode-alone timings."""
    from diffusers import AutoencoderTiny

    from pipelines.loading import load_from_manifest
    from pipelines.manifest import default_weights_root
    from pipelines.vae import TinyAutoencoder
    from server.commands.eval import Config, evaluate, load_judge

    start = time.perf_counter()
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    judge = load_judge(default_weights_root(), dev)
    tiny = TinyAutoencoder(AutoencoderTiny.from_pretrained(tiny_path, torch_dtype=dtype).to(dev))
    # eval's sample grids stay out of the results
    scratch = Path(tempfile.mkdtemp(prefix="darkroom_tiny_vae_"))
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    result: dict = {
        "device": dev.type,
        "card": card,
        "dtype": str(dtype).removeprefix("torch."),
        "captions": captions,
        "tiny_vae": str(tiny_path),
        "records": [],
        "summary": [],
    }
    for model_id, sampler, steps, guidance in MODELS:
        model = load_from_manifest(model_id, device=dev, dtype=dtype)
        configs = [Config(sampler, steps, guidance, ("seen", "heldout"))]
        kl = model.vae
        pair: dict[tuple[str, str], dict[str, Any]] = {}  # (decoder, split) -> eval record
        for decoder, vae in (("kl", kl), ("tiny", tiny)):
            model.vae = vae
            records = evaluate(
                model, judge, configs, captions, batch, scratch, 1e9, label=f"{model_id}_{decoder}_"
            )
            for record in records:
                record["decoder"] = decoder
                pair[decoder, str(record["split"])] = record
            result["records"] += records
        model.vae = kl
        for split in ("seen", "heldout"):
            a, b = pair["kl", split], pair["tiny", split]
            result["summary"].append(
                {
                    "model": model_id,
                    "sampler": sampler,
                    "steps": steps,
                    "guidance": guidance,
                    "split": split,
                    "acc_caption_kl": a["acc_caption"],
                    "acc_caption_tiny": b["acc_caption"],
                    "acc_caption_delta": b["acc_caption"] - a["acc_caption"],
                    "fid_judge_kl": a["fid_judge"],
                    "fid_judge_tiny": b["fid_judge"],
                }
            )
    spec = model.family
    latent_shape = (spec.latent_channels, SIZE // spec.latent_factor, SIZE // spec.latent_factor)
    result["decode_ms"] = decode_timings(kl, tiny, latent_shape, dev, dtype)
    result["decode_note"] = (
        f"decode alone, {SIZE}x{SIZE} images, median of {DECODE_REPS} calls after a warm-up, "
        f"on {card} ({torch.get_num_threads()} threads): a figure of this machine"
    )
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--captions", type=int, default=256, help="per split (seen, held-out)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--tiny-vae", type=Path, default=TINY_VAE, help="the AutoencoderTiny folder"
    )
    parser.add_argument("--out", default="bench/results/cpu_tiny_decoder_quality.json")
    args = parser.parse_args()
    result = tiny_decoder_quality(args.device, args.captions, args.batch, args.tiny_vae)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out} in {result['seconds']} s")
    print("model          split    caption acc KL / tiny (delta)   FID (judge) KL / tiny")
    for row in result["summary"]:
        print(
            f"{row['model']:14s} {row['split']:8s} {row['acc_caption_kl']:.3f} / {row['acc_caption_tiny']:.3f} "
            f"({row['acc_caption_delta']:+.3f})       {row['fid_judge_kl']:.3f} / {row['fid_judge_tiny']:.3f}"
        )
    for name, by_batch in result["decode_ms"].items():
        print(f"decode {name:4s}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in by_batch.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
