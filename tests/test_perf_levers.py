"""Speed levers on the CPU: what must hold where no GPU is (pass-through, copies, the overlap
switch), and the model's own timestep spacing reaching the samplers (SD-Turbo: trailing)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from pipelines.accel import BucketedDecoder, enable_vae_decoder_accel, vae_accel_for
from pipelines.models import assemble
from pipelines.text_to_image import sampling_sigmas
from pipelines.tiny import SD_SCHEDULER_CONFIG, tiny_sd1, tiny_sd1_components
from tests.server.conftest import serve

pytestmark = pytest.mark.anyio


def test_bucketed_decoder_passes_host_tensors_through_and_copies_as_the_plain_decoder() -> None:
    model = tiny_sd1()
    autoencoder = model.vae.vae  # type: ignore[attr-defined]
    z = torch.randn(3, 4, 8, 8)
    expected = autoencoder.decode(z, return_dict=False)[0]
    plain = autoencoder.decoder
    autoencoder.decoder = BucketedDecoder(plain, "graphs")
    assert torch.equal(autoencoder.decode(z, return_dict=False)[0], expected)
    # the fp32 NaN-retry copy (pipelines.vae) must not carry graphs or compiled code
    twin = copy.deepcopy(autoencoder)
    assert type(twin.decoder) is type(plain)
    assert torch.equal(twin.decode(z, return_dict=False)[0], expected)
    with pytest.raises(ValueError, match="mode"):
        BucketedDecoder(plain, "fast")
    compiled_graphs = BucketedDecoder(plain, "compile_graphs")  # off CUDA: the plain decoder, nothing captured
    assert torch.equal(compiled_graphs(z), plain(z)) and compiled_graphs.buckets_seen == []


def test_a_channels_last_decoder_gives_the_same_images_and_is_undone_with_the_lever() -> None:
    from pipelines.accel import disable_vae_decoder_accel
    from server.settings import Settings

    assert Settings().vae_channels_last  # on by default (bench/layout_probe.py)
    model = tiny_sd1()
    autoencoder = model.vae.vae  # type: ignore[attr-defined]
    z = torch.randn(3, 4, 8, 8)
    expected = autoencoder.decode(z, return_dict=False)[0]
    plain = autoencoder.decoder
    assert not BucketedDecoder(plain, "graphs", channels_last=True).channels_last  # graphs replay the eager layout
    assert BucketedDecoder(copy.deepcopy(plain), "compile_graphs", channels_last=True).channels_last  # compiled kernels
    assert plain.conv_in.weight.is_contiguous()
    autoencoder.decoder = BucketedDecoder(plain, "compile", channels_last=True)
    assert plain.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(autoencoder.decode(z, return_dict=False)[0], expected, rtol=1e-5, atol=1e-5)
    disable_vae_decoder_accel(model)
    assert model.vae.vae.decoder is plain and plain.conv_in.weight.is_contiguous()  # type: ignore[attr-defined]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled decoder is CUDA-only")
def test_the_compiled_decoder_in_either_layout_and_its_graphs_keep_the_eager_images() -> None:
    model = tiny_sd1()
    model.vae.vae.to("cuda", torch.float16)  # type: ignore[attr-defined]
    model.device = torch.device("cuda")
    latents = torch.randn(3, 4, 16, 16, device="cuda")
    eager = model.vae.decode(latents)  # type: ignore[attr-defined]
    from pipelines.accel import disable_vae_decoder_accel

    for mode, channels_last in (("compile", False), ("compile", True), ("compile_graphs", True)):
        assert enable_vae_decoder_accel(model, mode, channels_last=channels_last)
        for rows in (3, 1, 2, 3):  # compile_graphs: a padded bucket, a single row, a bucket, a replay
            images = model.vae.decode(latents[:rows])  # type: ignore[attr-defined]
            side = 16 * model.vae.latent_factor  # type: ignore[attr-defined]
            assert images.shape == (rows, 3, side, side)
            assert float((images - eager[:rows]).abs().max()) < 0.02  # fp16 rounding
        decoder = model.vae.vae.decoder  # type: ignore[attr-defined]
        if mode == "compile_graphs":  # captured, not fallen back to compile alone
            assert decoder.mode == "compile_graphs" and decoder.buckets_seen == [1, 2, 4]
        disable_vae_decoder_accel(model)
        torch._dynamo.reset()


def test_vae_accel_is_a_no_op_off_cuda_and_when_off() -> None:
    model = tiny_sd1()
    for mode in ("graphs", "compile", "compile_graphs", "auto", "off"):
        assert not enable_vae_decoder_accel(model, mode)
    assert not isinstance(model.vae.vae.decoder, BucketedDecoder)  # type: ignore[attr-defined]


def test_auto_vae_accel_compiles_the_decoder_of_few_step_models_and_beside_a_compiled_unet() -> None:
    from dataclasses import replace

    tiny = tiny_sd1()
    model = replace(tiny, family=replace(tiny.family, default_steps=25))
    assert vae_accel_for(model, "auto") == "off"
    turbo = replace(tiny, family=replace(tiny.family, default_steps=1))
    assert vae_accel_for(turbo, "auto") == "compile"
    assert vae_accel_for(turbo, "graphs") == "graphs" and vae_accel_for(model, "compile") == "compile"
    assert vae_accel_for(turbo, "compile_graphs") == "compile_graphs"
    assert vae_accel_for(model, "auto", compiled_unet=True) == "compile"
    assert vae_accel_for(model, "off", compiled_unet=True) == "off"


async def test_decode_overlap_on_a_cpu_model_decodes_inline_with_the_same_bytes() -> None:
    body = {"prompt": "a red square", "seed": 3, "width": 32, "height": 32, "num_images": 2}
    images = {}
    for overlap in (False, True):
        async with serve(decode_overlap=overlap) as s:
            r = await s.client.post("/generate", json=body)
            assert r.status_code == 200
            images[overlap] = r.json()["images"]
            assert s.engine._decode_pool is None  # no decode thread without CUDA
    assert images[False] == images[True]


def _sigma_of(scheduler: object, timesteps: np.ndarray) -> np.ndarray:
    alphas = scheduler.alphas_cumprod.double().numpy()[timesteps]  # type: ignore[attr-defined]
    return np.sqrt((1 - alphas) / alphas)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_samplers_follow_the_model_scheduler_spacing(spacing: str) -> None:
    """ddim / euler / ddpm / euler_ancestral take the model config's timestep_spacing (SD-Turbo's
    scheduler says trailing), equal to diffusers' schedulers built from the same config."""
    config = {**SD_SCHEDULER_CONFIG, "timestep_spacing": spacing}
    model = assemble("sd1", tiny_sd1_components(0), config, model_id="spacing", device="cpu", dtype=torch.float32)  # type: ignore[arg-type]
    steps = 4
    ddim = DDIMScheduler(**{k: v for k, v in config.items() if not k.startswith("_")})
    ddim.set_timesteps(steps)
    expected = _sigma_of(ddim, ddim.timesteps.numpy())
    for sampler in ("ddim", "euler", "ddpm", "euler_ancestral"):
        sigmas = sampling_sigmas(model, sampler, steps).numpy()
        np.testing.assert_allclose(sigmas[:-1], expected, rtol=1e-5, err_msg=sampler)  # diffusers: fp32 alphas
    euler = EulerDiscreteScheduler(**{k: v for k, v in config.items() if k not in ("_class_name", "set_alpha_to_one", "clip_sample")})
    euler.set_timesteps(steps)
    np.testing.assert_allclose(sampling_sigmas(model, "euler", steps).numpy(), euler.sigmas.double().numpy(), rtol=1e-5)
    if spacing == "trailing":
        assert ddim.timesteps[0] == 999  # the top of the schedule, where SD-Turbo was distilled
    # one-step (turbo) always starts at the top timestep, whatever the model's config says
    onestep = sampling_sigmas(model, "onestep", 1).numpy()
    np.testing.assert_allclose(onestep[0], _sigma_of(ddim, np.array([999]))[0], rtol=1e-5)


def test_fp8_lever_is_off_by_default_and_a_no_op_off_cuda() -> None:
    from pipelines.accel import enable_fp8_unet
    from server.settings import Settings

    assert Settings().unet_fp8 == "off"
    model = tiny_sd1()
    before = [type(m.weight) for m in model.denoiser.unet.modules() if isinstance(m, torch.nn.Linear)]  # type: ignore[attr-defined]
    assert enable_fp8_unet(model, "dynamic") == 0  # CPU model: untouched (fp8 matmuls need a Hopper GPU)
    after = [type(m.weight) for m in model.denoiser.unet.modules() if isinstance(m, torch.nn.Linear)]  # type: ignore[attr-defined]
    assert before == after


def test_time_call_repeats_short_calls_until_min_seconds() -> None:
    """bench.timing.time_call: at least `repeats` timed calls, more while they add up to less than
    min_seconds (capped by max_repeats); the warm-up calls are not timed."""
    import time

    from bench.timing import time_call

    calls = []

    def short() -> None:
        calls.append(1)
        time.sleep(0.01)

    time_call(short, warmup=1, repeats=2)
    assert len(calls) == 3
    calls.clear()
    time_call(short, warmup=1, repeats=2, min_seconds=0.08)
    assert len(calls) >= 1 + 8
    calls.clear()
    time_call(short, warmup=0, repeats=2, min_seconds=10.0, max_repeats=5)
    assert len(calls) == 5


def test_cudnn_benchmark_is_off_by_default_and_a_no_op_off_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.accel import enable_cudnn_benchmark
    from server.settings import Settings

    assert Settings().cudnn_benchmark is False
    monkeypatch.setenv("DARKROOM_CUDNN_BENCHMARK", "1")
    assert Settings().cudnn_benchmark is True
    before = torch.backends.cudnn.benchmark
    assert enable_cudnn_benchmark(False) is False and torch.backends.cudnn.benchmark == before
    if not torch.cuda.is_available():
        assert enable_cudnn_benchmark(True) is False and torch.backends.cudnn.benchmark == before


def test_bench_budget_estimate_drops_to_a_warm_compile_of_the_same_graphs() -> None:
    from bench.gpu import COMPILED_VARIANTS, variant_estimate_s

    by_label = {v.label: v for v in COMPILED_VARIANTS}
    plain, cudnn = by_label["darkroom-compiled-vaecompile"], by_label["darkroom-compiled-vaecompile-cudnn"]
    assert variant_estimate_s(cudnn, {}) == cudnn.est_s  # nothing ran yet: the rough cost
    took = {plain.graphs_key: 120.0}  # the same graphs ran in 120 s (caches warm from an earlier call)
    assert variant_estimate_s(cudnn, took) == 120.0
    assert variant_estimate_s(cudnn, {plain.graphs_key: 475.0}) == cudnn.est_s  # a cold compile: no more than est_s
    assert variant_estimate_s(by_label["darkroom-compiled"], took) == by_label["darkroom-compiled"].est_s  # other graphs
