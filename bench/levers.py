"""Each speed lever measured on its own on the bare SD1.5 UNet forward and the VAE decoder (random weights).

Rows = latent rows through the UNet (with CFG, two rows per image). Every lever is compared
with the eager fp16 forward in the same process on the same card; `max_abs_diff` says whether
the lever changes the output (exact levers should be at fp16 noise, ~1e-3). fp8 is compared
with the bf16 forward it replaces.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import Tensor

from bench.timing import sync, time_call
from pipelines.accel import BucketedDecoder, CudaGraphUNet, enable_fp8_linears


def lever_record(name: str, lever: str, rows: int, seconds: float, diff: float | None, gmac: float,
                 ceiling_tflops: float, extra: dict | None = None) -> dict:
    """One lever measurement {model, lever, rows, ms, tflops, mfu, max_abs_diff}, printed as it is made."""
    tflops = 2 * gmac * 1e9 * rows / seconds / 1e12
    print(f"  {name:7s} {lever:24s} rows={rows:3d} {seconds * 1e3:8.2f} ms  {tflops:6.1f} TFLOP/s", flush=True)
    return {
        "model": name, "lever": lever, "rows": rows, "ms": round(seconds * 1e3, 2),
        "tflops": round(tflops, 1), "mfu": round(tflops / ceiling_tflops, 3),
        "max_abs_diff": None if diff is None else float(diff), **(extra or {}),
    }


def lever_error(name: str, lever: str, rows: int, exc: BaseException) -> dict:
    """A lever that could not run here (missing package, unsupported kernel): the reason, kept."""
    print(f"  {name:7s} {lever:24s} rows={rows:3d} FAILED {type(exc).__name__}: {str(exc)[:160]}", flush=True)
    return {"model": name, "lever": lever, "rows": rows, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


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
        records.append(lever_record(name, lever, rows, seconds, diff, gmac, ceiling_tflops, extra))

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


def measure_xformers(name: str, unet: torch.nn.Module, config: dict, side: int, rows_list: list[int], gmac: float,
                     ceiling_tflops: float) -> list[dict]:
    """xformers memory-efficient attention (diffusers' XFormersAttnProcessor) vs the default SDPA processors."""
    references = {}
    for rows in rows_list:
        inputs = unet_inputs(unet, config, rows, side)
        references[rows] = (inputs, _forward(unet, inputs)().float())
    saved = unet.attn_processors
    records: list[dict] = []
    try:
        unet.enable_xformers_memory_efficient_attention()  # type: ignore[operator]
        for rows, (inputs, reference) in references.items():
            call = _forward(unet, inputs)
            diff = (call().float() - reference).abs().max().item()
            records.append(lever_record(name, "xformers", rows, time_call(call, warmup=1, repeats=5), diff, gmac, ceiling_tflops))
    except Exception as exc:  # noqa: BLE001 - no wheel for this torch / CUDA, or no kernel for this card
        records.append(lever_error(name, "xformers", rows_list[0], exc))
    finally:
        unet.set_attn_processor(saved)  # type: ignore[operator]
    return records


def measure_fp8(name: str, unet: torch.nn.Module, config: dict, side: int, rows: int, gmac: float,
                ceiling_tflops: float, compile_too: bool) -> list[dict]:
    """fp8 linears (torchao, dynamic per-row activation scales) on a bf16 copy of the UNet, vs that bf16 copy."""
    records: list[dict] = []
    bf16 = copy.deepcopy(unet).to(torch.bfloat16)
    inputs = unet_inputs(bf16, config, rows, side)
    reference = _forward(bf16, inputs)().float()
    records.append(lever_record(name, "bf16_eager", rows, time_call(_forward(bf16, inputs), warmup=1, repeats=5), None,
                                gmac, ceiling_tflops))
    try:
        converted = enable_fp8_linears(bf16, "dynamic")
        call = _forward(bf16, inputs)
        diff = (call().float() - reference).abs().max().item()
        rel = diff / max(reference.abs().max().item(), 1e-6)
        records.append(lever_record(name, "fp8_dynamic_eager", rows, time_call(call, warmup=1, repeats=5), diff, gmac,
                                    ceiling_tflops, {"linears_fp8": converted, "max_rel_diff": round(rel, 4)}))
        if compile_too:
            compiled = torch.compile(bf16, mode="default", fullgraph=False)
            start = time.perf_counter()
            _forward(compiled, inputs)()
            sync()
            compile_s = time.perf_counter() - start
            records.append(lever_record(name, "fp8_dynamic_compile", rows, time_call(_forward(compiled, inputs), warmup=1, repeats=5),
                                        None, gmac, ceiling_tflops, {"compile_s": round(compile_s, 1)}))
    except Exception as exc:  # noqa: BLE001 - torchao missing or its fp8 kernels unsupported here
        records.append(lever_error(name, "fp8_dynamic", rows, exc))
    del bf16
    torch.cuda.empty_cache()
    return records


def measure_vae_levers(vae: torch.nn.Module, latent_side: int, batch: int, gmac: float, ceiling_tflops: float,
                       compile_too: bool) -> list[dict]:
    """The VAE decoder (one decode of `batch` latents): eager, channels-last, CUDA graph, torch.compile (NCHW and
    channels-last).

    The graph and compile levers go through pipelines.accel.BucketedDecoder, the engine's own wrapper.
    """
    name = "vae-dec"
    records: list[dict] = []
    dtype = next(vae.parameters()).dtype
    z = torch.randn(batch, vae.config.latent_channels, latent_side, latent_side, device="cuda", dtype=dtype)

    def decode(latents: Tensor) -> Callable[[], Tensor]:
        def call() -> Tensor:
            with torch.no_grad():
                return vae.decode(latents, return_dict=False)[0]
        return call

    reference = decode(z)().float()
    records.append(lever_record(name, "eager_fp16", batch, time_call(decode(z), warmup=1, repeats=5), 0.0, gmac, ceiling_tflops))
    try:
        vae.to(memory_format=torch.channels_last)
        z_cl = z.to(memory_format=torch.channels_last)
        diff = (decode(z_cl)().float() - reference).abs().max().item()
        records.append(lever_record(name, "channels_last", batch, time_call(decode(z_cl), warmup=1, repeats=5), diff, gmac,
                                    ceiling_tflops))
    except Exception as exc:  # noqa: BLE001 - keep the other levers' figures
        records.append(lever_error(name, "channels_last", batch, exc))
    finally:
        vae.to(memory_format=torch.contiguous_format)
    plain = vae.decoder
    modes = [("graphs", False)] + ([("compile", False), ("compile", True)] if compile_too else [])
    for mode, channels_last in modes:
        label = f"bucketed_{mode}" + ("_channels_last" if channels_last else "")
        try:
            vae.decoder = BucketedDecoder(plain, mode, channels_last=channels_last)
            start = time.perf_counter()
            out = decode(z)().float()
            sync()
            first_s = time.perf_counter() - start
            diff = (out - reference).abs().max().item()
            records.append(lever_record(name, label, batch, time_call(decode(z), warmup=1, repeats=5), diff,
                                        gmac, ceiling_tflops, {"compile_s": round(first_s, 1)}))
        except Exception as exc:  # noqa: BLE001 - keep the other levers' figures
            records.append(lever_error(name, label, batch, exc))
        finally:
            vae.decoder = plain.to(memory_format=torch.contiguous_format)
            torch._dynamo.reset()
    return records
