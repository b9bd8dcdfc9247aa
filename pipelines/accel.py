"""Speed levers that leave the arithmetic unchanged: CUDA graphs per batch bucket, torch.compile, channels-last.

`CudaGraphUNet` wraps a diffusers UNet2DConditionModel (or anything with the same call
shape). The first call with a new input signature (batch bucket, latent shape, context
length, dtype) warms up on a side stream and captures one CUDA graph; later calls copy the
inputs into the captured buffers and replay it. The engine pads batches to a few bucket
sizes, so only a handful of graphs are ever captured. Calls it cannot graph (CPU tensors,
ControlNet residuals) go to the eager module unchanged.

`BucketedDecoder` does the same for the VAE decoder (at 512x512 it costs about three UNet
forwards, so it bounds one-step models): decode batches are padded to a bucket size and each
bucket replays a CUDA graph or runs a torch.compile'd decoder specialised to that shape.

`CpuBf16Decoder` is the CPU's decoder lever, and unlike the others it changes the arithmetic: a float32
decoder runs under autocast to bfloat16 (settings.vae_cpu_bf16; its quality cost is measured in
bench/decoder_quality.py).

Graphs are captured on their own stream with capture_error_mode="thread_local", one capture at
a time (a process-wide lock), so another thread (the engine's decode thread, on its own stream)
may launch, allocate or synchronise while one thread captures.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from pipelines.model import module_dtype

log = logging.getLogger(__name__)


@dataclass
class _CapturedCall:
    graph: torch.cuda.CUDAGraph
    sample: Tensor  # static input buffers, filled before each replay
    timestep: Tensor
    context: Tensor
    timestep_cond: Tensor | None  # LCM guidance embedding, when the UNet takes one
    added: dict[str, Tensor]
    output: Tensor  # static output buffer, cloned after each replay


DECODE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_CAPTURE_LOCK = threading.Lock()  # one capture at a time in the process


def capture_graph(forward: Callable[[], Tensor], pool: Any, warmup_calls: int = 2) -> tuple[torch.cuda.CUDAGraph, Tensor]:
    """Warm `forward` up on a side stream, then capture it once on that stream; (graph, its static output)."""
    with _CAPTURE_LOCK:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup_calls):
                forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=pool, stream=side, capture_error_mode="thread_local"):
            output = forward()
        torch.cuda.current_stream().wait_stream(side)
        return graph, output


class _UNetWrapper(torch.nn.Module):
    """A module around a UNet (or ControlNet) that the denoiser calls in its place: it reads `config`,
    `dtype` and `device` off the wrapper as off the module, so they are forwarded to `wrapped`."""

    @property
    def wrapped(self) -> torch.nn.Module:
        raise NotImplementedError

    @property
    def config(self) -> Any:
        return self.wrapped.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.wrapped.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.wrapped.parameters()).device


class CudaGraphUNet(_UNetWrapper):
    """Replays one captured CUDA graph per input signature of a UNet forward."""

    def __init__(self, unet: torch.nn.Module, warmup_calls: int = 2) -> None:
        super().__init__()
        self.unet = unet
        self.warmup_calls = warmup_calls
        self._graphs: dict[tuple[Any, ...], _CapturedCall] = {}
        self._pool: Any = None

    @property
    def wrapped(self) -> torch.nn.Module:
        return self.unet

    @property
    def captured_signatures(self) -> list[tuple[Any, ...]]:
        return list(self._graphs)

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float,
        encoder_hidden_states: Tensor,
        timestep_cond: Tensor | None = None,
        added_cond_kwargs: dict[str, Tensor] | None = None,
        down_block_additional_residuals: tuple[Tensor, ...] | None = None,
        mid_block_additional_residual: Tensor | None = None,
        return_dict: bool = True,
    ) -> Any:
        graphable = (
            sample.is_cuda
            and down_block_additional_residuals is None
            and mid_block_additional_residual is None
            and not torch.cuda.is_current_stream_capturing()
        )
        if not graphable:
            return self.unet(
                sample,
                timestep,
                encoder_hidden_states=encoder_hidden_states,
                timestep_cond=timestep_cond,
                added_cond_kwargs=added_cond_kwargs,
                down_block_additional_residuals=down_block_additional_residuals,
                mid_block_additional_residual=mid_block_additional_residual,
                return_dict=return_dict,
            )
        timestep = torch.as_tensor(timestep, device=sample.device)
        timestep = timestep.expand(sample.shape[0]) if timestep.ndim == 0 else timestep
        added = dict(added_cond_kwargs or {})
        key = (
            tuple(sample.shape),
            sample.dtype,
            timestep.dtype,
            tuple(encoder_hidden_states.shape),
            None if timestep_cond is None else tuple(timestep_cond.shape),
            tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(added.items())),
        )
        call = self._graphs.get(key)
        if call is None:
            call = self._capture(sample, timestep, encoder_hidden_states, timestep_cond, added)
            self._graphs[key] = call
        call.sample.copy_(sample)
        call.timestep.copy_(timestep)
        call.context.copy_(encoder_hidden_states)
        if call.timestep_cond is not None and timestep_cond is not None:
            call.timestep_cond.copy_(timestep_cond)
        for name, value in added.items():
            call.added[name].copy_(value)
        call.graph.replay()
        out = call.output.clone()  # the pool is shared: the next replay may overwrite it
        return SimpleNamespace(sample=out) if return_dict else (out,)

    def _capture(
        self,
        sample: Tensor,
        timestep: Tensor,
        context: Tensor,
        timestep_cond: Tensor | None,
        added: dict[str, Tensor],
    ) -> _CapturedCall:
        static_sample = sample.clone()
        static_timestep = timestep.clone()
        static_context = context.clone()
        static_timestep_cond = None if timestep_cond is None else timestep_cond.clone()
        static_added = {name: value.clone() for name, value in added.items()}

        def forward() -> Tensor:
            return self.unet(
                static_sample,
                static_timestep,
                encoder_hidden_states=static_context,
                timestep_cond=static_timestep_cond,
                added_cond_kwargs=static_added or None,
                return_dict=False,
            )[0]

        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph, output = capture_graph(forward, self._pool, self.warmup_calls)
        return _CapturedCall(
            graph, static_sample, static_timestep, static_context, static_timestep_cond, static_added, output
        )


class CudaGraphTextModel(torch.nn.Module):
    """Replays one captured CUDA graph per token-id shape of a transformers text model, called as the
    CLIP encoders call it (pipelines.text): `model(ids)` or `model(ids, output_hidden_states=True)`.

    A one-step model's text encoder is a large share of its batch-1 time: the bundled student on an
    H200 spends ~3.4-4.1 ms of its ~6-9 ms in eager text encoding (launches and Python, not
    arithmetic; training/results/call23/record.md). Replaying the same kernels on the same shape is
    exact. Calls with other arguments (T5's attention mask) and CPU tensors run eagerly; a shape
    whose capture fails runs eagerly from then on.
    """

    def __init__(self, model: torch.nn.Module, warmup_calls: int = 2) -> None:
        super().__init__()
        self.model = model
        self.warmup_calls = warmup_calls
        self._graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, Tensor, Any]] = {}
        self._eager: set[tuple[Any, ...]] = set()
        self._pool: Any = None

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def captured_signatures(self) -> list[tuple[Any, ...]]:
        return list(self._graphs)

    def forward(self, input_ids: Tensor, output_hidden_states: bool = False, **kwargs: Any) -> Any:
        key = (tuple(input_ids.shape), bool(output_hidden_states))
        if kwargs or not input_ids.is_cuda or key in self._eager or torch.cuda.is_current_stream_capturing():
            return self.model(input_ids, output_hidden_states=output_hidden_states, **kwargs)
        call = self._graphs.get(key)
        if call is None:
            static_ids = input_ids.clone()
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            try:
                graph, output = capture_graph(lambda: self.model(static_ids, output_hidden_states=output_hidden_states),
                                              self._pool, self.warmup_calls)
            except RuntimeError:  # not capturable (a host sync inside the model): eager for this shape
                self._eager.add(key)
                return self.model(input_ids, output_hidden_states=output_hidden_states)
            call = self._graphs[key] = (graph, static_ids, output)
        graph, static_ids, output = call
        static_ids.copy_(input_ids)
        graph.replay()
        # the pool is shared: the next replay may overwrite the static outputs
        fields = {name: tuple(t.clone() for t in value) if isinstance(value, tuple) else value.clone()
                  for name, value in output.items()}
        return type(output)(**fields)


class BucketedDecoder(torch.nn.Module):
    """A VAE `Decoder` run per batch bucket as a CUDA graph ("graphs"), compiled ("compile"), or compiled and
    replayed per bucket as a CUDA graph ("compile_graphs").

    Graphs: rows are padded to the next bucket by repeating the last row (outputs dropped), so a
    server captures at most len(DECODE_BUCKETS) graphs. Compile: one compilation with a dynamic
    batch dimension (a single row is padded to two, so size 1 is never specialised), so varying
    decode batch sizes never recompile mid-serving. The arithmetic is the decoder's own:
    graphs replay the same kernels; compile fuses elementwise work (GroupNorm + SiLU), which
    changes fp16 rounding only. A deep copy (the fp32 NaN-retry decoder) is the plain decoder.

    compile_graphs: the compiled decoder's kernels (fewer: fused elementwise work) captured per bucket
    like "graphs", so a small batch pays neither eager's launches nor compile's host-side work (at batch
    1 a few-step model's decode is launch- and host-bound: call 24's H200, the bundled one-step student
    4.11 ms as served with the compiled decoder against 3.71 ms with graphs). Where a capture fails,
    the decoder stays compiled without graphs and says so once in the log.

    channels_last (the compile modes): the decoder's weights and its input in NHWC memory. cuDNN's
    tensor-core convolutions are NHWC kernels, and once GroupNorm + SiLU are generated kernels
    (eager GroupNorm is slow on NHWC, so eager keeps NCHW) nothing else minds the layout: the SD
    decoder at 512x512 took 77.4 -> 65.1 ms per 8 images on an H100 (bench/layout_probe.py). The
    images come out in NHWC memory, the same values as NCHW up to the kernels' fp16 rounding.
    """

    _compiled: Callable[[Tensor], Tensor] | None

    def __init__(self, decoder: torch.nn.Module, mode: str, channels_last: bool = False) -> None:
        super().__init__()
        if mode not in DECODER_MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, DECODER_MODES))}, got {mode!r}")
        self.decoder = decoder
        self.mode = mode
        self.channels_last = channels_last and mode != "graphs"
        if self.channels_last:
            decoder.to(memory_format=torch.channels_last)
        # kept out of the module tree: the compiled wrapper shares the decoder's parameters
        compiled = torch.compile(decoder) if mode != "graphs" else None
        object.__setattr__(self, "_compiled", compiled)
        self._graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}
        self._pool: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> torch.nn.Module:
        return copy.deepcopy(self.decoder, memo)

    @property
    def buckets_seen(self) -> list[int]:
        """Batch sizes captured so far (graphs and compile_graphs modes)."""
        return sorted(key[0][0] for key in self._graphs)

    def forward(self, sample: Tensor, latent_embeds: Tensor | None = None) -> Tensor:
        if not sample.is_cuda or latent_embeds is not None or torch.cuda.is_current_stream_capturing():
            # a tiny decoder (AutoencoderTiny's) takes the latents alone
            return self.decoder(sample) if latent_embeds is None else self.decoder(sample, latent_embeds)
        rows = sample.shape[0]
        if self.mode == "compile":
            assert self._compiled is not None
            if rows == 1:
                sample = torch.cat([sample, sample])
            if self.channels_last:
                sample = sample.contiguous(memory_format=torch.channels_last)
            torch._dynamo.maybe_mark_dynamic(sample, 0)
            return self._compiled(sample)[:rows]
        padded = next((b for b in DECODE_BUCKETS if b >= rows), rows)
        if padded > rows:
            sample = torch.cat([sample, sample[-1:].expand(padded - rows, *sample.shape[1:])])
        key = (tuple(sample.shape), sample.dtype)
        call = self._graphs.get(key)
        if call is None:
            static_in = sample.clone(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            run = self._compiled if self.mode == "compile_graphs" else self.decoder
            assert run is not None
            try:
                graph, static_out = capture_graph(lambda: run(static_in), self._pool)
            except Exception as e:  # a compiled decoder that cannot be captured still decodes
                if self.mode != "compile_graphs":
                    raise
                log.warning("VAE decoder: CUDA graph capture of the compiled decoder failed (%s); compiled without graphs",
                            type(e).__name__)
                self.mode = "compile"
                return self.forward(sample[:rows])
            call = self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = call
        static_in.copy_(sample)
        graph.replay()
        return static_out[:rows].clone()  # the pool is shared: the next replay may overwrite it


DECODER_MODES = ("graphs", "compile", "compile_graphs")
FEW_STEPS = 4  # "auto" compiles the VAE decoder of models whose default step count is at most this


def vae_accel_for(model: object, mode: str, compiled_unet: bool = False) -> str:
    """The VAE lever a model gets: `mode` itself, or for "auto" "compile" for one/few-step models and
    for any model whose UNet is compiled too, else "off".

    For a one-step model the decoder is most of the GPU time (SD-Turbo 512x512 on an H200, run 4:
    compiling it took the engine from 59.5 to 80.9 images/s for 34 s of warm-up). For a 25-step
    model with an eager UNet it is a few percent of an image, not worth the warm-up; once the UNet
    is compiled (its own warm-up is minutes) the decoder is a larger share: SD1.5 fast mode, compiled
    UNet, 10.91 -> 11.88 images/s with the decoder compiled and JPEG encoded on the GPU (run 9).
    """
    if mode != "auto":
        return mode
    family = getattr(model, "family", None)
    few_steps = family is not None and family.default_steps <= FEW_STEPS
    return "compile" if few_steps or compiled_unet else "off"


def enable_vae_decoder_accel(model: object, mode: str, compiled_unet: bool = False, channels_last: bool = True) -> bool:
    """Wrap a CUDA model's VAE decoder, and its tiny decoder if it has one, in BucketedDecoder (vae_accel_for's
    mode; compiled decoders in channels-last memory unless `channels_last` is False); "off" or off CUDA: False.

    Models whose VAE decodes in an fp32 copy (SDXL's force_upcast) keep that copy eager.
    """
    mode = vae_accel_for(model, mode, compiled_unet)
    device = getattr(model, "device", None)
    if mode == "off" or device is None or torch.device(device).type != "cuda":
        return False
    wrapped = False
    for autoencoder in _autoencoders(model):
        decoder = getattr(autoencoder.vae, "decoder", None)
        if decoder is None or isinstance(decoder, BucketedDecoder):
            continue
        autoencoder.vae.decoder = BucketedDecoder(decoder, mode, channels_last=channels_last)
        wrapped = True
    return wrapped


def disable_vae_decoder_accel(model: object) -> None:
    """Undo enable_vae_decoder_accel in place: the model's decoders (KL and tiny) as loaded."""
    for autoencoder in _autoencoders(model):
        decoder = getattr(autoencoder.vae, "decoder", None)
        if isinstance(decoder, BucketedDecoder):
            autoencoder.vae.decoder = decoder.decoder.to(memory_format=torch.contiguous_format)


def _autoencoders(model: object) -> list[Any]:
    """The model's pipelines.vae autoencoders (its KL autoencoder, and its tiny one if it has one)."""
    return [a for a in (getattr(model, "vae", None), getattr(model, "tiny_vae", None)) if hasattr(a, "vae")]


CPU_BF16_MODES = ("auto", "on", "off")


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware: Intel AMX tiles with AVX512-BF16, as torch's cpuinfo
    reports them; False where this torch cannot say (another architecture, an older build)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_decoder_for(model: object, mode: str) -> bool:
    """Whether a model's decoders run in bf16 (settings.vae_cpu_bf16): only a CPU model whose VAE is float32,
    then always for "on", for "auto" where the CPU has bf16 matrix units (cpu_has_bf16_matrix_units)."""
    if mode not in CPU_BF16_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, CPU_BF16_MODES))}, got {mode!r}")
    device = getattr(model, "device", None)
    vae = getattr(getattr(model, "vae", None), "vae", None)
    if mode == "off" or device is None or torch.device(device).type != "cpu" or not isinstance(vae, torch.nn.Module):
        return False
    if module_dtype(vae) != torch.float32:  # already low precision: nothing to gain, and autocast would recast fp16
        return False
    return mode == "on" or cpu_has_bf16_matrix_units()


class _ContiguousGroupNorm(torch.overrides.TorchFunctionMode):
    """F.group_norm computed on an NCHW-contiguous copy of its input, handed back in the input's layout. oneDNN's
    bf16 convolutions hand back channels-last tensors, and on them torch's GroupNorm kernel rounded a row differently
    by the batch's size and the thread count (the bundled decoder on this CPU: rows of odd batches differed from even
    ones at 2 threads, rows' positions mattered at 3); on NCHW inputs every row was the same bits at any size and
    position, at 1 to 8 threads. The output goes back to channels-last for the next convolution (the same values;
    16 latents of the bundled decoder 60.3 -> 56.5 ms against leaving it NCHW)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is not torch.nn.functional.group_norm:
            return func(*args, **kwargs)
        x = args[0]
        out = func(x.contiguous(), *args[1:], **kwargs)
        if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return out.contiguous(memory_format=torch.channels_last)
        return out


class CpuBf16Decoder(torch.nn.Module):
    """A float32 VAE decoder (KL or tiny) run on the CPU under autocast to bfloat16: convolutions and matmuls in
    bf16 on oneDNN's kernels (AMX tiles where the CPU has them), GroupNorm on NCHW inputs (_ContiguousGroupNorm),
    the images handed back in float32.

    The bundled decoder on this repo's 2-core AMX CPU: 136.7 -> 64.4 ms per 16 latents, images within 0.032 of
    fp32 on [0, 1] (bench/results/cpu_bf16_decoder_quality.json). A row's image is the same bits alone and in any
    batch, at any position (tests/pipelines/test_cpu_bf16_decoder.py), at the price of GroupNorm's NCHW copies:
    ~13% of the bf16 decoder's time (the bundled one at 16 latents, 50.1 -> 56.5 ms).
    A deep copy is the plain decoder: the fp32 NaN retry (pipelines.vae) decodes with such a copy.
    """

    computes_in_bf16 = True  # pipelines.vae: this decoder's VAE is not its own fp32 copy

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def __deepcopy__(self, memo: dict[int, Any]) -> torch.nn.Module:
        return copy.deepcopy(self.decoder, memo)

    def forward(self, sample: Tensor, latent_embeds: Tensor | None = None) -> Tensor:
        if sample.device.type != "cpu":
            return self.decoder(sample) if latent_embeds is None else self.decoder(sample, latent_embeds)
        with torch.autocast("cpu", dtype=torch.bfloat16), _ContiguousGroupNorm():
            # a tiny decoder (AutoencoderTiny's) takes the latents alone
            images = self.decoder(sample) if latent_embeds is None else self.decoder(sample, latent_embeds)
        return images.to(sample.dtype)


def enable_cpu_bf16_decoder(model: object, mode: str) -> bool:
    """Wrap a CPU model's float32 VAE decoder, and its tiny decoder if it has one, in CpuBf16Decoder when
    cpu_bf16_decoder_for says so; whether any was wrapped."""
    if not cpu_bf16_decoder_for(model, mode):
        return False
    wrapped = False
    for autoencoder in _autoencoders(model):
        decoder = getattr(autoencoder.vae, "decoder", None)
        if decoder is None or isinstance(decoder, CpuBf16Decoder) or module_dtype(autoencoder.vae) != torch.float32:
            continue
        autoencoder.vae.decoder = CpuBf16Decoder(decoder)
        wrapped = True
    return wrapped


def disable_cpu_bf16_decoder(model: object) -> None:
    """Undo enable_cpu_bf16_decoder in place: the model's decoders (KL and tiny) as loaded."""
    for autoencoder in _autoencoders(model):
        decoder = getattr(autoencoder.vae, "decoder", None)
        if isinstance(decoder, CpuBf16Decoder):
            autoencoder.vae.decoder = decoder.decoder


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Convert a convolutional module's weights to channels-last memory format in place."""
    return module.to(memory_format=torch.channels_last)


def _cuda_unet(model: object) -> torch.nn.Module | None:
    """The model's UNet when it is served on CUDA, else None."""
    unet = getattr(getattr(model, "denoiser", None), "unet", None)
    device = getattr(model, "device", None)
    if unet is None or device is None or torch.device(device).type != "cuda":
        return None
    return unet


def enable_compile(model: object, mode: str = "default") -> bool:
    """torch.compile a CUDA model's UNet in place (static shapes: one compile per bucket shape)."""
    unet = _cuda_unet(model)
    if unet is None or isinstance(unet, CudaGraphUNet) or hasattr(unet, "_orig_mod"):
        return False
    model.denoiser.unet = torch.compile(unet, mode=mode, dynamic=False)  # type: ignore[attr-defined]
    return True


def enable_cuda_graphs(model: object) -> bool:
    """Wrap a CUDA model's UNet in CudaGraphUNet in place; False when it has none or is off CUDA."""
    unet = _cuda_unet(model)
    if unet is None or isinstance(unet, CudaGraphUNet):
        return False
    model.denoiser.unet = CudaGraphUNet(unet)  # type: ignore[attr-defined]
    return True


def enable_text_encoder_graphs(model: object) -> int:
    """Wrap the transformers text models of a CUDA model's text encoder (pipelines.text's `model`, and
    SDXL's `model_2`) in CudaGraphTextModel in place; how many were wrapped (0 off CUDA or without one)."""
    encoder = getattr(model, "text_encoder", None)
    wrapped = 0
    for name in ("model", "model_2"):
        module = getattr(encoder, name, None)
        if not isinstance(module, torch.nn.Module) or isinstance(module, CudaGraphTextModel):
            continue
        parameter = next(module.parameters(), None)
        if parameter is None or parameter.device.type != "cuda":
            continue
        setattr(encoder, name, CudaGraphTextModel(module))
        wrapped += 1
    return wrapped


def _rows_of(value: Any, start: int, stop: int, batch: int, rows: int) -> Any:
    """Rows [start, stop) of every batch-first tensor in `value` (nested tuples, lists, dicts), padded to `rows`
    by repeating the last of them; anything else as it is."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch:
        part = value[start:stop]
        if part.shape[0] < rows:
            part = torch.cat([part, part[-1:].expand(rows - part.shape[0], *part.shape[1:])])
        return part
    if isinstance(value, (tuple, list)):
        return type(value)(_rows_of(v, start, stop, batch, rows) for v in value)
    if isinstance(value, dict):
        return {k: _rows_of(v, start, stop, batch, rows) for k, v in value.items()}
    return value


def _first_rows(value: Any, n: int, rows: int) -> Any:
    """The first n rows of every tensor of `rows` rows in an output (tensors, tuples, lists, dicts)."""
    if isinstance(value, Tensor):
        return value[:n] if value.ndim > 0 and value.shape[0] == rows else value
    if isinstance(value, (tuple, list)):
        return type(value)(_first_rows(v, n, rows) for v in value)
    if isinstance(value, dict):
        return type(value)(**{k: _first_rows(v, n, rows) for k, v in value.items()})
    return value


def _cat_rows(parts: list[Any]) -> Any:
    """Concatenate per-chunk outputs along rows (the same nesting in each part)."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts) if first.ndim > 0 else first
    if isinstance(first, (tuple, list)):
        return type(first)(_cat_rows([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return type(first)(**{k: _cat_rows([p[k] for p in parts]) for k in first})
    return first


def fixed_rows_call(function: Callable[..., Any], rows: int, *args: Any, **kwargs: Any) -> Any:
    """Call a batch-first `function` on exactly `rows` rows at a time: the batch (the first argument's rows) is
    cut into chunks of `rows`, the last padded by repeating its last row, and the outputs' real rows joined.

    Convolution and small-matrix kernels pick their algorithm (and so their summation order) by the batch size,
    so the same row rounds differently in passes of different sizes: a batched image then differs from the same
    request alone by 1/255 in a few pixels (bundled UNet on CPU: rows of passes of 1, 2-3 and >= 4 differ by
    ~3e-6). At one fixed shape a row's result does not depend on the other rows or on its position (checked on
    the bundled UNet and decoder, tests/test_batch_invariance.py), so every image equals the one alone."""
    batch = int(args[0].shape[0])
    if batch == rows:
        return function(*args, **kwargs)
    parts = []
    for start in range(0, batch, rows):
        stop = min(start + rows, batch)
        out = function(*_rows_of(args, start, stop, batch, rows), **_rows_of(kwargs, start, stop, batch, rows))
        parts.append(_first_rows(out, stop - start, rows))
    return parts[0] if len(parts) == 1 else _cat_rows(parts)


class FixedRows(_UNetWrapper):
    """A batch-first module (a UNet, a ControlNet) run on exactly `rows` rows per call (fixed_rows_call)."""

    def __init__(self, module: torch.nn.Module, rows: int) -> None:
        super().__init__()
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.module = module
        self.rows = rows

    @property
    def wrapped(self) -> torch.nn.Module:
        return self.module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return fixed_rows_call(self.module, self.rows, *args, **kwargs)


def enable_batch_invariance(model: object, rows: int, decode_rows: int) -> int:
    """Batch-invariant passes for a model, in place: its UNet and ControlNets run on exactly `rows` rows per call,
    its decoders (KL and tiny) on `decode_rows` (settings.batch_invariant); how many parts were wrapped."""
    wrapped = 0
    denoiser = getattr(model, "denoiser", None)
    unet = getattr(denoiser, "unet", None)
    if isinstance(unet, torch.nn.Module) and not isinstance(unet, FixedRows):
        denoiser.unet = FixedRows(unet, rows)  # type: ignore[union-attr]
        wrapped += 1
    controlnets = getattr(model, "controlnets", None) or {}
    for name, controlnet in list(controlnets.items()):
        if isinstance(controlnet, torch.nn.Module) and not isinstance(controlnet, FixedRows):
            controlnets[name] = FixedRows(controlnet, rows)
            wrapped += 1
    for autoencoder in _autoencoders(model):
        autoencoder.decode_rows = decode_rows
        wrapped += 1
    return wrapped


def enable_fp8_linears(module: torch.nn.Module, mode: str = "dynamic") -> int:
    """Quantize a module's nn.Linear layers to float8 (e4m3) in place with torchao; the count converted.

    "dynamic": fp8 weights and per-row fp8 activations scaled at run time (fp8 tensor-core
    matmuls: Hopper and later; the module should be bf16). "weight": fp8 weights only, upcast
    for a bf16 matmul (halves weight memory, no faster arithmetic). Convolutions stay as they
    are. Only layers whose sizes are multiples of 16 qualify (the fp8 matmul's alignment).
    The output changes (quantization error): an opt-in "fast" lever, its quality cost measured
    on the bundled model (bench/fp8_quality.py).
    """
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        PerRow,
        quantize_,
    )

    if mode == "dynamic":
        config: object = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    elif mode == "weight":
        config = Float8WeightOnlyConfig()
    else:
        raise ValueError(f"mode must be 'dynamic' or 'weight', got {mode!r}")
    converted: list[str] = []

    def eligible(layer: torch.nn.Module, name: str) -> bool:
        ok = isinstance(layer, torch.nn.Linear) and layer.in_features % 16 == 0 and layer.out_features % 16 == 0
        if ok:
            converted.append(name)
        return ok

    quantize_(module, config, filter_fn=eligible)
    return len(converted)


def enable_cudnn_benchmark(on: bool) -> bool:
    """cuDNN's autotuner for convolutions (process-wide: torch.backends.cudnn.benchmark): each new input shape is
    timed once over cuDNN's algorithms at its first pass, which the warm-up's pass of every batch bucket covers.
    True when switched on; off CUDA (or not asked) it stays as it is."""
    if not on or not torch.cuda.is_available():
        return False
    torch.backends.cudnn.benchmark = True
    return True


def enable_fp8_unet(model: object, mode: str) -> int:
    """fp8 linears in a CUDA model's UNet (enable_fp8_linears); 0 for "off" or off CUDA.

    Dynamic fp8 needs a bf16 model (torchao's per-row fp8 matmul writes bf16): serve with
    dtype bfloat16. Apply before compile / CUDA graphs, which then wrap the quantized UNet.
    """
    unet = _cuda_unet(model)
    if mode == "off" or unet is None:
        return 0
    if mode == "dynamic" and next(unet.parameters()).dtype != torch.bfloat16:
        raise ValueError("fp8 'dynamic' needs the model in bfloat16 (set dtype=bfloat16)")
    return enable_fp8_linears(unet, mode)
