"""Each speed lever measured on its own on the bare SD1.5 / SDXL UNet forward (random weights).

Rows = latent rows through the UNet (with CFG, two rows per image). Every lever is compared
with the eager fp16 forward in the same process on the same card; `max_abs_diff` says whether
the lever changes the output (exact levers should be at fp16 noise, ~1e-3).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from bench.timing import sync, time_call
from pipelines.accel import CudaGraphUNet


def unet_inputs(unet: torch.nn.Module, config: dict, rows: int, side: int) -> dict[str, Tensor]:
    """Random inputs of the right shapes for one UNet forward of `rows` latent rows."""
    dtype = next(unet.parameters()).dtype
    ucfg = config["unet"]
    inputs = {
        "sample": torch.randn(rows, ucfg["in_channels"], side, side, device="cuda", dtype=dtype),
        "timestep": torch.full((rows,), 500.0, device="cuda"),
        "encoder_hidden_states": torch.randn(rows, 77, ucfg["cross_attention_dim"], device="cuda", dtype=dtype),
    }
    if ucfg.get("addition_embed_type") == "text_time":
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(rows, 1280, device="cuda", dtype=dtype),
            "time_ids": torch.tensor([[side * 8, side * 8, 0, 0, side * 8, side * 8]] * rows, device="cuda", dtype=dtype),
        }
    return inputs


def _forward(module: torch.nn.Module, inputs: dict) -> Callable[[], Tensor]:
    def call() -> Tensor:
        with torch.no_grad():
            return module(
                inputs["sample"], inputs["timestep"],
                encoder_hidden_states=inputs["encoder_hidden_states"],
                added_cond_kwargs=inputs.get("added_cond_kwargs"), return_dict=False,
            )[0]
    return call


def measure_levers(
    name: str, unet: torch.nn.Module, config: dict, side: int, rows_list: list[int], gmac: float,
    ceiling_tflops: float, compile_too: bool,
) -> list[dict]:
    """Records {lever, rows, ms, tflops, mfu, max_abs_diff} for each lever and batch size."""
    records: list[dict] = []
    graphed = CudaGraphUNet(unet)

    def record(lever: str, rows: int, seconds: float, diff: float | None, extra: dict | None = None) -> None:
        tflops = 2 * gmac * 1e9 * rows / seconds / 1e12
        records.append({
            "model": name, "lever": lever, "rows": rows, "ms": round(seconds * 1e3, 2),
            "tflops": round(tflops, 1), "mfu": round(tflops / ceiling_tflops, 3),
            "max_abs_diff": None if diff is None else float(diff), **(extra or {}),
        })
        print(f"  {name:5s} {lever:22s} rows={rows:3d} {seconds * 1e3:8.2f} ms  {tflops:6.1f} TFLOP/s", flush=True)

    for rows in rows_list:
        inputs = unet_inputs(unet, config, rows, side)
        eager = _forward(unet, inputs)
        reference = eager().float()
        record("eager_fp16", rows, time_call(eager, warmup=2, repeats=5), 0.0)

        graph_call = _forward(graphed, inputs)
        diff = (graph_call().float() - reference).abs().max().item()
        record("cuda_graph", rows, time_call(graph_call, warmup=1, repeats=5), diff)

        # Attention backends under SDPA: keep the fastest.
        from torch.nn.attention import SDPBackend, sdpa_kernel
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            try:
                with sdpa_kernel(backend):
                    out = eager().float()
                    seconds = time_call(eager, warmup=1, repeats=5)
                record(f"sdpa_{backend.name.lower()}", rows, seconds, (out - reference).abs().max().item())
            except RuntimeError as exc:
                records.append({"model": name, "lever": f"sdpa_{backend.name.lower()}", "rows": rows, "error": str(exc)[:200]})

    # channels-last and bf16 on a copy-free basis: convert, measure, convert back.
    for rows in rows_list[:2]:
        inputs = unet_inputs(unet, config, rows, side)
        reference = _forward(unet, inputs)().float()
        unet.to(memory_format=torch.channels_last)
        cl_inputs = dict(inputs, sample=inputs["sample"].to(memory_format=torch.channels_last))
        call = _forward(CudaGraphUNet(unet), cl_inputs)
        diff = (call().float() - reference).abs().max().item()
        record("channels_last+graph", rows, time_call(call, warmup=1, repeats=5), diff)
        unet.to(memory_format=torch.contiguous_format)

    if compile_too:
        rows = rows_list[0]
        inputs = unet_inputs(unet, config, rows, side)
        reference = _forward(unet, inputs)().float()
        compiled = torch.compile(unet, mode="default", fullgraph=False)
        start = time.perf_counter()
        out = _forward(compiled, inputs)().float()
        sync()
        compile_s = time.perf_counter() - start
        seconds = time_call(_forward(compiled, inputs), warmup=1, repeats=5)
        record("torch_compile_default", rows, seconds, (out - reference).abs().max().item(), {"compile_s": round(compile_s, 1)})
        for big in rows_list[-1:]:  # one more shape: each compile costs a minute or more
            inputs = unet_inputs(unet, config, big, side)
            start = time.perf_counter()
            _forward(compiled, inputs)()
            sync()
            recompile_s = time.perf_counter() - start
            record("torch_compile_default", big, time_call(_forward(compiled, inputs), warmup=1, repeats=5), None,
                   {"compile_s": round(recompile_s, 1)})
    return records
