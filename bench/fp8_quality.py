"""The quality cost of fp8 linears, measured on the bundled model: judge accuracy bf16 vs fp8.

The bundled model (weights/bundled) generates the same captions with the same seeds twice,
DDIM 25 at guidance 4 on seen and held-out caption sets (server.commands.eval): once with its
UNet in bf16, once with the UNet's linear layers quantized to fp8 (pipelines.accel
.enable_fp8_linears, torchao; Hopper GPUs). The difference in whole-caption accuracy and
judge-space FID is the lever's quality cost. Off CUDA only the bf16 pass runs (a dry run).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch


def fp8_quality(device: str, captions: int, batch: int) -> dict:
    """{"records": [...bf16 then fp8 eval records...], "linears_fp8": n, "seconds": s} (or an "error")."""
    from pipelines.accel import enable_fp8_linears
    from pipelines.loading import load_from_manifest
    from pipelines.manifest import default_weights_root
    from server.commands.eval import Config, evaluate, load_judge

    start = time.perf_counter()
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    judge = load_judge(default_weights_root(), dev)
    model = load_from_manifest("bundled", device=dev, dtype=dtype)
    configs = [Config("ddim", 25, 4.0, ("seen", "heldout"))]
    scratch = Path(tempfile.mkdtemp(prefix="darkroom_fp8_"))  # eval's sample grids stay out of the results
    result: dict = {"dtype": str(dtype).removeprefix("torch."), "captions": captions}
    result["records"] = evaluate(model, judge, configs, captions, batch, scratch, 1e9, label=f"{result['dtype']}_")
    if dev.type != "cuda":
        result["fp8"] = "skipped: fp8 matmuls need a CUDA GPU (Hopper or later)"
    else:
        try:
            result["linears_fp8"] = enable_fp8_linears(model.denoiser.unet, "dynamic")  # type: ignore[attr-defined]
            result["records"] += evaluate(model, judge, configs, captions, batch, scratch, 1e9, label="fp8_")
        except Exception as exc:  # noqa: BLE001 - torchao missing or fp8 unsupported: keep the bf16 figures
            result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result
