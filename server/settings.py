"""Server settings from the environment (prefix DARKROOM_), a .env file or the command line."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything `darkroom serve` and `create_app` read; each field is `DARKROOM_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="DARKROOM_", env_file=None, extra="ignore")

    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = Field(default=8000, ge=0, le=65535)
    manifest: str = "weights_manifest.yaml"
    model: str | None = None  # model id(s) to serve, comma-separated (first = default); None: the manifest's default
    weights_root: str = "weights"
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    dtype: str = "auto"  # "auto" (fp16 on CUDA, fp32 on CPU) | "float16" | "bfloat16" | "float32"

    # Engine
    # latent rows (images) per forward pass. Passes of different sizes round differently (real kernels), so a
    # batched image can differ from the same request alone by 1/255 in a few pixels, unless batch_invariant
    max_batch: int = Field(default=8, ge=1, le=256)
    # every UNet / ControlNet call on exactly 2 x max_batch rows and every decode on max_batch (padded, or cut into
    # such chunks: pipelines.accel.fixed_rows_call), so an image is byte-identical whatever it was batched with
    # (tests/test_batch_invariance.py). A pass of one request then costs as much as a full one: on this repo's
    # 2-core CPU with max_batch 8 a lone bundled-teacher request took 3.4x as long (throughput under load unchanged),
    # on an H200 no longer (host-bound); a smaller max_batch trades throughput back for latency. Off: 1/255 in a
    # few pixels under load, up to 6/255 in about a quarter of them with the CPU's bf16 decoder (vae_cpu_bf16; README)
    batch_invariant: bool = False
    max_active: int | None = Field(default=None, ge=1)  # requests denoising at once; None: max_batch
    max_queue: int = Field(default=64, ge=0)  # requests waiting to start; beyond this: 503
    max_batch_pixels: int = Field(default=8 * 1024 * 1024, ge=1)  # width*height summed over a pass's images (before CFG doubles rows)
    # pad each pass to 1, 2, 4, 8, 16, 32 rows so each size is captured once (CUDA graphs /
    # compile); None: pad on CUDA only (on a CPU padding is pure extra work)
    pad_to_bucket: bool | None = None
    # replay one CUDA graph per UNet bucket (pipelines.accel); CUDA only. Exact; halves batch-1
    # latency of SD1.5 on an H200 (bench/results/gpu_NVIDIA_H200_run2.json)
    cuda_graphs: bool = True
    # replay one CUDA graph per token-id shape of the CLIP text encoders (pipelines.accel.CudaGraphTextModel);
    # CUDA only, exact (the same kernels). The eager encoder is launch-bound: half of the bundled one-step
    # student's batch-1 time on an H200 (training/results/call23/record.md)
    text_encoder_graphs: bool = True
    # torch.compile the UNet (default mode, static shapes): 1.35x saturated SD1.5 and 1.16x SDXL on
    # an H200 (bench/results/gpu_NVIDIA_H200_run7_*.json) for minutes of compilation (one per bucket
    # shape, done by warm_up below). On in docker-compose.yml; off here, so `darkroom serve` on a
    # workstation is ready in seconds (a no-op off CUDA)
    compile_unet: bool = False
    # cuDNN's convolution autotuner (torch.backends.cudnn.benchmark, process-wide; CUDA only): each
    # shape is timed once at its first pass, during the warm-up. Exact within fp16 rounding (the same
    # convolutions, maybe another algorithm). Off: measured in run 12 (bench/run6.sh turbo_cudnn, H200),
    # SD-Turbo in-process 86.0 -> 85.4 img/s and over HTTP 82.2 -> 58.2 img/s
    cudnn_benchmark: bool = False
    # fp8 linears in the UNet (torchao; Hopper GPUs): "off", "weight" (fp8 weights, bf16 matmul) or
    # "dynamic" (fp8 weights and activations; needs dtype bfloat16). Changes the output: "fast" mode
    unet_fp8: Literal["off", "weight", "dynamic"] = "off"
    # VAE decoder lever (pipelines.accel.enable_vae_decoder_accel), CUDA only: "auto" (compile for
    # one/few-step models, whose decode is most of the GPU time: SD-Turbo 59.5 -> 80.9 img/s for
    # 34 s of warm-up on an H200; and for every model when compile_unet is on: SD1.5 fast mode
    # 10.91 -> 11.88 img/s with GPU JPEG; off otherwise), "off", "graphs" (CUDA graph per batch
    # bucket: no gain at 8 images), "compile" (torch.compile, dynamic batch: 1.56x on the bare decoder) or
    # "compile_graphs" (the compiled decoder captured per bucket: for launch-bound small batches; the bundled one-step
    # student at batch 1 on an H200, against "auto": 3.49 vs 3.43 ms (call 32), 3.18 vs 3.81 ms (call 33))
    vae_accel: Literal["auto", "off", "graphs", "compile", "compile_graphs"] = "auto"
    # a compiled VAE decoder (vae_accel) in channels-last (NHWC) memory, CUDA only: cuDNN's fp16
    # convolutions are NHWC kernels and compiled GroupNorm does not mind the layout. The SD decoder at
    # 512x512 on an H100: 77.4 -> 65.1 ms per 8 images (bench/layout_probe.py). Exact within fp16 rounding
    vae_channels_last: bool = True
    # the VAE decoders (KL and tiny) of a float32 model on the CPU run in bfloat16 (pipelines.accel.CpuBf16Decoder:
    # autocast, oneDNN's bf16 kernels). "auto": on where the CPU has bf16 matrix units (Intel AMX tiles with
    # AVX512-BF16, as torch's cpuinfo reports them), "on": on any CPU (elsewhere oneDNN emulates bf16; not measured),
    # "off". No effect on CUDA (there: vae_accel) or on a model served in fp16 / bf16. The bundled decoder on this
    # repo's 2-core AMX CPU: 16.4 -> 12.3 ms for 1 latent, 136.7 -> 64.4 ms for 16, 1170 -> 349 ms for 64; the one-step
    # student's whole call at 16 prompts 26.1-27.1x faster than the teacher's, against 18.9-20.4x in fp32
    # (training/results/call34/cpu_bf16_decoder/record.md). Changes the output: pixels within 0.032 (8/255) of fp32,
    # mean 0.0006; whole-caption accuracy and judge FID of the teacher and the student moved by at most 0.004 on
    # 512 + 512 captions (bench/results/cpu_bf16_decoder_quality.json). A decode's rows are the same bits at any batch
    # size, but bf16 rounding carries the UNet's differences between pass sizes further: without batch_invariant a
    # batched image is within 6/255 of the same request alone (fp32: 1/255). So it is off by default: a request's
    # image should not depend on what it was batched with beyond the fp32 path's 1/255; set "auto" where that
    # matters less than the decoder's speed
    vae_cpu_bf16: Literal["auto", "on", "off"] = "off"
    # decode finished latents on a second CUDA stream in a decode thread, overlapping the next
    # denoising steps (CUDA only). Off: it lost on an H200 (SD-Turbo HTTP 55.0 -> 44.9 img/s, the
    # extra Python thread contends for the GIL; the GPU is already busy with large batches)
    decode_overlap: bool = False
    # pipeline the VAE decode: launch a step's decodes, and wait for them (finiteness check,
    # encode, hand-off) only after the next step's forward pass is queued, so the GPU queue does not
    # drain between batches. Same thread, same stream, same images. Run 6 profiled SD-Turbo over
    # HTTP with the engine thread waiting on the decode 76% of its time and the GPU busy 68%: this
    # was the lever for that, and it lost in run 7 (SD-Turbo 82.3 -> 80.6 img/s in-process, HTTP
    # 78.7 -> 66.5 at 64 clients; bench/results/gpu_NVIDIA_H200_run7_turbo_http.json), so it is
    # off. decode_overlap, when also on, takes
    # precedence on CUDA; a result's decode_s then includes the pass it overlapped
    decode_pipeline: bool = False
    # before readiness, run one pass of every batch bucket per model (Engine.warm_up), so CUDA
    # graphs are captured and compiled UNets / decoders compiled before users wait on them; /readyz
    # answers 503 until it is done. None: on when a served model is on CUDA
    warm_up: bool | None = None
    # sizes the warm-up covers besides each model's default, "WIDTHxHEIGHT" comma-separated
    # (DARKROOM_WARM_UP_SIZES=768x768,512x768): each is a new shape for CUDA graphs and compile, so
    # the first request at a size not listed pays for its compilation; a size a model cannot serve
    # is skipped for that model
    warm_up_sizes: Annotated[list[tuple[int, int]], NoDecode] = Field(default_factory=list)
    # JPEG outputs of a CUDA model are encoded on the GPU (nvJPEG, torchvision) in one batched call
    gpu_encode: bool = True
    text_cache_size: int = Field(default=1024, ge=0)  # LRU entries of (model, prompt) -> embeddings
    encode_threads: int = Field(default_factory=lambda: min(8, os.cpu_count() or 2), ge=1)  # image encoding pool
    request_timeout_s: float = Field(default=300.0, gt=0)  # deadline from arrival; beyond this: 504
    drain_timeout_s: float = Field(default=60.0, ge=0)  # how long shutdown waits for in-flight work
    retry_after_s: int = Field(default=2, ge=1)  # least Retry-After on 503 (queue full: estimated from load)
    shutdown_delay_s: float = Field(default=3.0, ge=0)  # SIGTERM: /readyz answers 503 this long before closing

    # HTTP
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # larger bodies: 413
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)  # bearer keys; empty: open
    max_num_images: int = Field(default=8, ge=1)
    max_steps: int = Field(default=1000, ge=1)  # caps every sampler's step range
    max_jobs: int = Field(default=256, ge=1)  # finished jobs kept (with their images) for GET /v1/jobs/{id}
    job_ttl_s: float = Field(default=900.0, gt=0)  # a finished job is forgotten after this

    # Previews in job events: a low-resolution PNG of the current x0 every N steps (0: off)
    preview_every: int = Field(default=5, ge=0)
    preview_max_side: int = Field(default=64, ge=8)

    @field_validator("warm_up_sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        """DARKROOM_WARM_UP_SIZES is a comma-separated list of WIDTHxHEIGHT."""
        if not isinstance(value, str):
            return value
        sizes = []
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            width, sep, height = item.lower().partition("x")
            if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
                raise ValueError(f"warm_up_sizes: {item!r} is not WIDTHxHEIGHT (e.g. 768x768)")
            sizes.append((int(width), int(height)))
        return sizes

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """DARKROOM_API_KEYS is a comma-separated list."""
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def active_limit(self) -> int:
        """Requests denoising at once (max_active, else max_batch)."""
        return self.max_active if self.max_active is not None else self.max_batch
