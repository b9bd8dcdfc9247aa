"""Memory layout under torch.compile: the VAE decoder and the UNet, NCHW vs channels-last (GPU).

Eager channels-last lost on the decoder (run 4: 124.2 vs 111.7 ms for 8 images at 512x512):
PyTorch's eager GroupNorm is slow on NHWC tensors. Under torch.compile GroupNorm + SiLU are
generated kernels, so only the convolutions see the layout, and cuDNN's fp16 tensor-core
convolutions are NHWC kernels (an NCHW input costs them layout transposes). This probe times,
in one process on one card: the SD2.1 / SD-Turbo decoder (= SD1.5's) through the engine's own
wrapper (pipelines.accel.BucketedDecoder, dynamic batch) in both layouts, and the SD2.1 UNet
compiled with static shapes in both layouts, each against eager NCHW, with the max difference
from eager NCHW and the compile time of each.

    python -m bench.layout_probe --out DIR [--tiny]      # JSON: DIR/layout_probe_<card>.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from bench.arch import build
from bench.levers import _forward, lever_error, lever_record, unet_inputs
from bench.timing import card_name, matmul_ceiling_tflops, sync, time_call
from pipelines.accel import BucketedDecoder

DECODER_GMAC = 1257.0  # SD VAE decoder per 512x512 image (../shared/reference/ANCHORS.md)
UNET_GMAC = 401.6  # SD2.1 UNet per 64x64 latent row (as bench/gpu.py counts it)


def _timed_first(call: Callable[[], Tensor]) -> tuple[Tensor, float]:
    start = time.perf_counter()
    out = call()
    sync()
    return out, time.perf_counter() - start


def _with_cudnn_benchmark(name: str, lever: str, rows: int, call: Callable[[], Tensor], gmac: float,
                          ceiling: float) -> dict:
    """The same compiled call with cuDNN's autotuner on (the compiled graph calls cuDNN for its
    convolutions, so no recompilation): what the convolutions leave on the table at this shape."""
    torch.backends.cudnn.benchmark = True
    try:
        return lever_record(name, f"{lever}+cudnn_benchmark", rows, time_call(call, warmup=2, repeats=5), None, gmac,
                            ceiling)
    finally:
        torch.backends.cudnn.benchmark = False


def probe_decoder(vae: torch.nn.Module, batches: list[int], ceiling: float, side: int) -> list[dict]:
    records: list[dict] = []
    dtype = next(vae.parameters()).dtype
    plain = vae.decoder
    for batch in batches:
        z = torch.randn(batch, vae.config.latent_channels, side, side, device="cuda", dtype=dtype)

        def decode(latents: Tensor) -> Callable[[], Tensor]:
            return lambda: vae.decode(latents, return_dict=False)[0]

        with torch.no_grad():
            reference = decode(z)().float()
            records.append(lever_record("vae-dec", "eager_nchw", batch, time_call(decode(z), repeats=5), 0.0,
                                        DECODER_GMAC, ceiling))
            for layout in ("nchw", "channels_last"):
                try:
                    if layout == "channels_last":
                        vae.to(memory_format=torch.channels_last)
                    vae.decoder = BucketedDecoder(plain, "compile")
                    latents = z.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else z
                    out, first_s = _timed_first(decode(latents))
                    diff = (out.float() - reference).abs().max().item()
                    records.append(lever_record(
                        "vae-dec", f"compile_{layout}", batch, time_call(decode(latents), repeats=5), diff, DECODER_GMAC,
                        ceiling, {"first_call_s": round(first_s, 1),
                                  "out_channels_last": bool(out.is_contiguous(memory_format=torch.channels_last))}))
                    records.append(_with_cudnn_benchmark("vae-dec", f"compile_{layout}", batch, decode(latents),
                                                         DECODER_GMAC, ceiling))
                except Exception as exc:  # noqa: BLE001 - keep the other layout's figures
                    records.append(lever_error("vae-dec", f"compile_{layout}", batch, exc))
                finally:
                    vae.decoder = plain
                    vae.to(memory_format=torch.contiguous_format)
                    torch._dynamo.reset()
    return records


def probe_unet(unet: torch.nn.Module, config: dict, rows_list: list[int], ceiling: float, side: int) -> list[dict]:
    records: list[dict] = []
    for rows in rows_list:
        inputs = unet_inputs(unet, config, rows, side)
        reference = _forward(unet, inputs)().float()
        records.append(lever_record("sd21", "eager_nchw", rows, time_call(_forward(unet, inputs), repeats=5), 0.0,
                                    UNET_GMAC, ceiling))
        for layout in ("nchw", "channels_last"):
            try:
                if layout == "channels_last":
                    unet.to(memory_format=torch.channels_last)
                    inputs = dict(inputs, sample=inputs["sample"].contiguous(memory_format=torch.channels_last))
                compiled = torch.compile(unet, dynamic=False)
                out, first_s = _timed_first(_forward(compiled, inputs))
                diff = (out.float() - reference).abs().max().item()
                records.append(lever_record("sd21", f"compile_{layout}", rows,
                                            time_call(_forward(compiled, inputs), repeats=10), diff, UNET_GMAC, ceiling,
                                            {"first_call_s": round(first_s, 1)}))
                records.append(_with_cudnn_benchmark("sd21", f"compile_{layout}", rows, _forward(compiled, inputs),
                                                     UNET_GMAC, ceiling))
            except Exception as exc:  # noqa: BLE001 - keep the other layout's figures
                records.append(lever_error("sd21", f"compile_{layout}", rows, exc))
            finally:
                unet.to(memory_format=torch.contiguous_format)
                inputs = dict(inputs, sample=inputs["sample"].contiguous())
                torch._dynamo.reset()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="shrunk models (checks the script; figures meaningless)")
    parser.add_argument("--decoder-batches", default="8,16")
    parser.add_argument("--unet-rows", default="32,2")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.layout_probe needs CUDA")
    card = card_name()
    ceiling = matmul_ceiling_tflops()
    print(f"{card}: matmul ceiling {ceiling:.1f} TFLOP/s", flush=True)
    arch = build("sd21", tiny=args.tiny)
    side = 8 if args.tiny else 64
    records: list[dict] = []
    result = {"card": card, "torch": torch.__version__, "ceiling_tflops": round(ceiling, 1), "latent_side": side,
              "records": records}
    out = args.out / f"layout_probe_{card.replace(' ', '_')}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    records += probe_decoder(arch.vae, [int(b) for b in args.decoder_batches.split(",")], ceiling, side)
    out.write_text(json.dumps(result, indent=1))
    records += probe_unet(arch.unet, arch.config, [int(r) for r in args.unet_rows.split(",")], ceiling, side)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
