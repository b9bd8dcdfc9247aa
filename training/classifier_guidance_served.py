"""Classifier guidance as served: judge accuracy against `classifier_scale`, through the engine.

    python -m training.classifier_guidance_served [--captions 32] [--guidance 1,4]
        [--scales 0,3,10,30] [--model bundled] [--device cpu] [--threads 1]
        [--out training/results/classifier_guidance_served.json]

Each caption of sample_scenes(99, N, split) for the seen ("train") and held-out splits is sent
as a /generate request would be (server.validation.resolve: DDIM 25, seed = its index, labels
parsed from the prompt) to an in-process Engine over the manifest's model and its classifier
(server.models), at every CFG scale w and classifier scale; the PNGs it returns are scored by
the judge (training.judge.caption_accuracy). The same seeds everywhere make the comparison
paired. w = 1 is classifier guidance alone (no uncond pass), as Dhariwal & Nichol use it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from server.engine import Engine
from server.schemas import GenerateRequest
from server.validation import resolve

SAMPLER, STEPS = "ddim", 25
SPLITS = (("train", "seen"), ("heldout", "heldout"))


def served(engine: Engine, requests: list[GenerateRequest]) -> Tensor:
    """(N, 3, H, W) in [0, 1]: the engine's PNGs for the requests' first images, all in flight at once."""

    async def one(request: GenerateRequest) -> np.ndarray:
        spec = resolve(request, engine.cards(), timeout_s=engine.settings.request_timeout_s,
                       max_num_images=engine.settings.max_batch)
        result = await engine.submit(spec)
        return np.asarray(Image.open(io.BytesIO(result.images[0])).convert("RGB"))

    async def every() -> list[np.ndarray]:
        return await asyncio.gather(*(one(r) for r in requests))

    pixels = np.stack(asyncio.run(every()))  # (N, H, W, 3) uint8
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)


def served_images(
    engine: Engine, prompts: list[str], seeds: list[int], guidance: float, classifier_scale: float
) -> Tensor:
    """(N, 3, H, W) in [0, 1]: one DDIM 25 request per prompt at CFG w and classifier scale."""
    return served(engine, [
        GenerateRequest(prompt=p, seed=s, sampler=SAMPLER, steps=STEPS, guidance=guidance,
                        classifier_scale=classifier_scale)
        for p, s in zip(prompts, seeds)
    ])


def served_engine(model_id: str, max_batch: int, device: str = "cpu") -> Engine:
    """A started engine over the manifest's `model_id` and its classifier (fp32 on CPU, fp16 on CUDA)."""
    from server.models import load_served_models
    from server.settings import Settings

    settings = Settings(model=model_id, device=device, max_batch=max_batch, max_queue=1024,
                        request_timeout_s=3600.0)
    models, _ = load_served_models(settings)
    engine = Engine(models, settings)
    engine.start()
    return engine


def measure(
    engine: Engine, judge: torch.nn.Module, captions: int, guidances: list[float], scales: list[float]
) -> list[dict[str, object]]:
    """One record per (split, w, scale): judge accuracies of the served images, their change vs scale 0."""
    from training.data import sample_scenes
    from training.judge import caption_accuracy

    records: list[dict[str, object]] = []
    for split, name in SPLITS:
        scenes = sample_scenes(99, captions, split)
        prompts = [s.caption.text for s in scenes]
        seeds = list(range(captions))
        for guidance in guidances:
            baseline: Tensor | None = None
            for scale in scales:
                started = time.perf_counter()
                images = served_images(engine, prompts, seeds, guidance, scale)
                seconds = time.perf_counter() - started
                on_judge = images.to(next(judge.parameters()).device)
                accuracy, _ = caption_accuracy(judge, on_judge, [s.caption for s in scenes])  # type: ignore[arg-type]
                if scale == 0:
                    baseline = images
                change = None if baseline is None else float((images - baseline).abs().mean() * 255)
                records.append({"split": name, "guidance": guidance, "classifier_scale": scale, "captions": captions,
                                "mean_abs_change_vs_scale0_levels": change, "wall_s": round(seconds, 1), **accuracy})
                print(json.dumps(records[-1]), flush=True)
    return records


def _weights_sha256(model_id: str) -> dict[str, str]:
    """The manifest hashes of the model's and its classifier's weight files: which weights were measured."""
    from pipelines.manifest import load_manifest

    manifest = load_manifest()
    entry = manifest.get(model_id)
    entries = [entry] + ([manifest.get(entry.classifier)] if entry.classifier else [])
    return {f"{e.path}/{f.path}": f.sha256 or "unknown" for e in entries for f in e.files
            if f.path.endswith(".safetensors")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=32)
    parser.add_argument("--guidance", default="1,4", help="CFG scales w, comma-separated")
    parser.add_argument("--scales", default="0,3,10,30", help="classifier scales, comma-separated")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--out", type=Path, default=Path("training/results/classifier_guidance_served.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from server.commands.eval import load_judge

    started = time.perf_counter()
    engine = served_engine(args.model, args.max_batch, args.device)
    try:
        judge = load_judge(args.weights, torch.device(args.device))
        records = measure(engine, judge, args.captions, [float(w) for w in args.guidance.split(",")],
                          [float(s) for s in args.scales.split(",")])
    finally:
        engine.stop()
    out = {
        "what": "judge accuracy of /generate images vs classifier_scale (served path: validation + engine)",
        "model": args.model,
        "weights_sha256": _weights_sha256(args.model),
        "sampler": SAMPLER, "steps": STEPS,
        "captions": "training.data.sample_scenes(99, N, split), seed = caption index",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": args.threads, "torch": torch.__version__,
        "total_wall_s": round(time.perf_counter() - started, 1),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
