"""The quality cost of the guidance interval, measured on the bundled model: judge accuracy with and without.

    python -m bench.guidance_quality --captions 256 --interval 1,inf --interval 2.5,inf \\
        --out bench/results/cpu_guidance_interval_quality.json

The bundled model (weights/bundled; its DDIM sigmas are SD1.5's: the same scaled-linear
schedule) generates the same captions with the same seeds, DDIM 25 at guidance 4 on seen and
held-out caption sets (server.commands.eval), once guiding every step and once per interval
(Kynkaanniemi et al. 2024: the uncond pass only while sigma is in [sigma_lo, sigma_hi]). The
difference in whole-caption accuracy and judge-space FID is the interval's quality cost; the
share of uncond rows it skips is its speed-up on a UNet-bound server (2 rows per guided step, 1
otherwise). Runs on the CPU in minutes (the bundled model is tiny).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

STEPS, GUIDANCE = 25, 4.0


def uncond_share(sigmas: list[float], interval: tuple[float, float] | None) -> tuple[int, float]:
    """(guided steps, UNet rows per image relative to guiding every step) for DDIM's model sigmas."""
    from pipelines.guidance import in_guidance_interval

    steps = len(sigmas)
    guided = steps if interval is None else int(in_guidance_interval(torch.tensor(sigmas), *interval).sum())
    return guided, (steps + guided) / (2 * steps)


def guidance_interval_quality(device: str, captions: int, intervals: list[tuple[float, float]], batch: int,
                              all_steps: bool = True) -> dict:
    """{"records": [...every step guided (unless not all_steps), then each interval...], "rows": {...}, "seconds": s}."""
    from pipelines.loading import load_from_manifest
    from pipelines.manifest import default_weights_root, load_manifest
    from pipelines.text_to_image import sampling_sigmas
    from server.commands.eval import Config, evaluate, load_judge

    start = time.perf_counter()
    dev = torch.device(device)
    judge = load_judge(default_weights_root(), dev)
    model = load_from_manifest("bundled", device=dev, dtype=torch.float32)
    sigmas = [float(s) for s in sampling_sigmas(model, "ddim", STEPS)[:-1]]  # the sigmas the model is called at
    scratch = Path(tempfile.mkdtemp(prefix="darkroom_interval_"))  # eval's sample grids stay out of the results
    result: dict = {"model": "bundled", "sampler": "ddim", "steps": STEPS, "guidance": GUIDANCE, "captions": captions,
                    "device": device, "model_sigmas": [round(s, 4) for s in sigmas], "records": [], "rows": {},
                    "unet_sha256": next(f.sha256 for f in load_manifest().get("bundled").files  # which weights were measured
                                        if f.path.startswith("unet/") and f.path.endswith(".safetensors"))}
    for interval in [None, *intervals] if all_steps else intervals:
        label = "all_steps_" if interval is None else f"interval_{interval[0]:g}_{interval[1]:g}_"
        guided, rows = uncond_share(sigmas, interval)
        result["rows"][label.rstrip("_")] = {"guided_steps": guided, "unet_rows_vs_all_steps": round(rows, 3),
                                             "speedup_if_unet_bound": round(1 / rows, 3)}
        config = Config("ddim", STEPS, GUIDANCE, ("seen", "heldout"), guidance_interval=interval)
        result["records"] += evaluate(model, judge, [config], captions, batch, scratch, 1e9, label=label)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def parse_interval(text: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in text.split(","))  # float("inf") parses
    return lo, hi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=256, help="per split (seen, held-out)")
    parser.add_argument("--interval", action="append", type=parse_interval, default=None,
                        help="sigma_lo,sigma_hi (repeatable; 'inf' allowed); default 1,inf")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="bench/results/cpu_guidance_interval_quality.json")
    parser.add_argument("--no-all-steps", action="store_true",
                        help="skip the every-step baseline (e.g. measured by an earlier invocation with the same captions)")
    args = parser.parse_args()
    result = guidance_interval_quality(args.device, args.captions, args.interval or [(1.0, math.inf)], args.batch,
                                       all_steps=not args.no_all_steps)
    for record in result["records"]:  # JSON has no inf: the interval's upper end is written as a string
        if "guidance_interval" in record:
            record["guidance_interval"] = [x if math.isfinite(x) else "inf" for x in record["guidance_interval"]]
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out} in {result['seconds']} s")
    print("label                    split    caption acc   FID (judge)   guided steps / rows")
    for r in result["records"]:
        label = str(r["model"]).rstrip("_")
        rows = result["rows"][label]
        print(f"{label:24s} {r['split']:8s} {r['acc_caption']:11.3f} {r['fid_judge']:12.3f}   "
              f"{rows['guided_steps']:2d} / {rows['unet_rows_vs_all_steps']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
