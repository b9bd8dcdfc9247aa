"""Latent UNet wrapper: parametrisations, timestep map, LCM boundary, SDXL and ControlNet inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler
from torch import Tensor

from pipelines.conditioning import Conditioning
from pipelines.models.discrete import DiscreteScheduleConfig
from pipelines.models.latent_unet import LatentUNetDenoiser, LCMBoundary, guidance_scale_embedding

SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


class StubUNet(torch.nn.Module):
    """Returns a fixed output and records its inputs."""

    def __init__(self, output: Tensor, **config: object) -> None:
        super().__init__()
        self.output = output
        self.config = SimpleNamespace(**{"addition_embed_type": None, "time_cond_proj_dim": None, **config})
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[str, object] = {}

    def forward(self, z: Tensor, timestep: Tensor, **inputs: object) -> tuple[Tensor]:
        self.seen = {"z": z.clone(), "timestep": timestep.clone(), **inputs}
        return (self.output.expand_as(z).clone(),)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32


def _alphas_cumprod() -> Tensor:
    return DDIMScheduler(**SD_BETAS).alphas_cumprod.double()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_parametrisations_against_diffusers_formulas(prediction_type: str) -> None:
    t = 500
    abar = float(_alphas_cumprod()[t])
    sigma = ((1 - abar) / abar) ** 0.5
    torch.manual_seed(0)
    output = torch.randn(1, 4, 3, 3)
    x = torch.randn(2, 4, 3, 3) * (sigma**2 + 1) ** 0.5
    unet = StubUNet(output)
    denoiser = LatentUNetDenoiser(unet, DiscreteScheduleConfig(prediction_type=prediction_type), latent_factor=8)
    x0 = denoiser(x, torch.full((2,), sigma, dtype=torch.float64), Conditioning(text_embeddings=torch.zeros(2, 77, 8)))

    z = x * abar**0.5  # the model input: c_in * x = sqrt(abar) * x
    assert torch.allclose(unet.seen["z"], z.float(), atol=1e-6)
    assert torch.allclose(unet.seen["timestep"], torch.full((2,), float(t)), atol=1e-3)
    # diffusers DDIM step's pred_original_sample, per prediction type
    if prediction_type == "epsilon":
        expected = (z - (1 - abar) ** 0.5 * output) / abar**0.5
    elif prediction_type == "v_prediction":
        expected = abar**0.5 * z - (1 - abar) ** 0.5 * output
    else:
        expected = output.expand_as(z)
    assert torch.allclose(x0, expected.float(), atol=1e-5)


def test_v_prediction_hand_computed_value() -> None:
    # sigma = 1: c_in = 1/sqrt(2); x0 = x / 2 - v / sqrt(2)
    unet = StubUNet(torch.full((1, 4, 1, 1), 0.5))
    denoiser = LatentUNetDenoiser(unet, DiscreteScheduleConfig(prediction_type="v_prediction"), latent_factor=8)
    x = torch.full((1, 4, 1, 1), 2.0)
    x0 = denoiser(x, torch.ones(1, dtype=torch.float64), Conditioning(text_embeddings=torch.zeros(1, 1, 8)))
    assert torch.allclose(x0, torch.full_like(x, 1.0 - 0.5 / 2**0.5), atol=1e-6)


def test_lcm_boundary_matches_lcm_scheduler_and_hand_values() -> None:
    boundary = LCMBoundary()
    c_skip, c_out = boundary.scalings(torch.tensor([0.0, 1.0, 499.0], dtype=torch.float64))
    # t = 1: (10 t)^2 = 100, sigma_data^2 = 0.25
    assert c_skip.tolist() == pytest.approx([1.0, 0.25 / 100.25, 0.25 / (4990.0**2 + 0.25)], rel=1e-12)
    assert c_out.tolist() == pytest.approx([0.0, 10.0 / 100.25**0.5, 4990.0 / (4990.0**2 + 0.25) ** 0.5], rel=1e-12)

    scheduler = LCMScheduler(**SD_BETAS)
    t = 499
    ref_skip, ref_out = scheduler.get_scalings_for_boundary_condition_discrete(t)
    abar = float(_alphas_cumprod()[t])
    sigma = ((1 - abar) / abar) ** 0.5
    eps = torch.randn(1, 4, 2, 2)
    unet = StubUNet(eps)
    denoiser = LatentUNetDenoiser(unet, DiscreteScheduleConfig(), latent_factor=8, lcm=boundary)
    x = torch.randn(1, 4, 2, 2) * 3
    x0 = denoiser(x, torch.tensor([sigma], dtype=torch.float64), Conditioning(text_embeddings=torch.zeros(1, 1, 8)))
    z = x * abar**0.5
    pred = (z - (1 - abar) ** 0.5 * eps) / abar**0.5
    assert torch.allclose(x0, ref_out * pred + ref_skip * z, atol=1e-5)


def test_lcm_guidance_embedding_goes_to_timestep_cond() -> None:
    unet = StubUNet(torch.zeros(1, 4, 1, 1), time_cond_proj_dim=6)
    denoiser = LatentUNetDenoiser(unet, DiscreteScheduleConfig(), latent_factor=8, lcm=LCMBoundary(guidance_scale=8.0))
    denoiser(torch.zeros(2, 4, 1, 1), torch.ones(2, dtype=torch.float64), Conditioning(text_embeddings=torch.zeros(2, 1, 8)))
    expected = guidance_scale_embedding(torch.full((2,), 7.0), 6)
    assert torch.allclose(unet.seen["timestep_cond"], expected)
    reference = torch.tensor(7000.0) * torch.exp(torch.arange(3.0) * -(torch.log(torch.tensor(10000.0)) / 2))
    assert torch.allclose(expected[0], torch.cat([reference.sin(), reference.cos()]), atol=1e-5)


def test_sdxl_time_ids_fall_back_to_the_latent_size() -> None:
    unet = StubUNet(torch.zeros(1, 4, 1, 1), addition_embed_type="text_time")
    denoiser = LatentUNetDenoiser(unet, DiscreteScheduleConfig(), latent_factor=8)
    cond = Conditioning(text_embeddings=torch.zeros(1, 77, 8), pooled_text_embeddings=torch.ones(1, 4))
    denoiser(torch.zeros(1, 4, 16, 12), torch.ones(1, dtype=torch.float64), cond)
    added = unet.seen["added_cond_kwargs"]
    assert added["time_ids"].tolist() == [[128.0, 96.0, 0.0, 0.0, 128.0, 96.0]]
    assert torch.equal(added["text_embeds"], torch.ones(1, 4))
    with pytest.raises(ValueError, match="pooled_text_embeddings"):
        denoiser(torch.zeros(1, 4, 2, 2), torch.ones(1, dtype=torch.float64), Conditioning(text_embeddings=torch.zeros(1, 1, 8)))


def test_controlnet_residuals_are_scaled_per_row() -> None:
    class StubControlNet(torch.nn.Module):
        def forward(self, z, t, *, encoder_hidden_states, controlnet_cond, conditioning_scale, added_cond_kwargs, return_dict):
            assert conditioning_scale == 1.0
            return [torch.ones_like(z), 2 * torch.ones_like(z)], 3 * torch.ones_like(z)

    unet = StubUNet(torch.zeros(1, 4, 1, 1))
    denoiser = LatentUNetDenoiser(unet, DiscreteScheduleConfig(), latent_factor=8, controlnet=StubControlNet())
    cond = Conditioning(
        text_embeddings=torch.zeros(2, 1, 8),
        control_image=torch.zeros(2, 3, 16, 16),
        control_scale=torch.tensor([0.5, 0.0]),
    )
    denoiser(torch.zeros(2, 4, 2, 2), torch.ones(2, dtype=torch.float64), cond)
    down = unet.seen["down_block_additional_residuals"]
    mid = unet.seen["mid_block_additional_residual"]
    assert down[1][:, 0, 0, 0].tolist() == [1.0, 0.0]
    assert mid[:, 0, 0, 0].tolist() == [1.5, 0.0]
    no_control = LatentUNetDenoiser(unet, DiscreteScheduleConfig(), latent_factor=8)
    with pytest.raises(ValueError, match="ControlNet"):
        no_control(torch.zeros(2, 4, 2, 2), torch.ones(2, dtype=torch.float64), cond)


def test_sigmas_follow_diffusers_ddim_timesteps_and_stop_at_sigma_of_t0() -> None:
    denoiser = LatentUNetDenoiser(StubUNet(torch.zeros(1)), DiscreteScheduleConfig(), latent_factor=8)
    scheduler = DDIMScheduler(**SD_BETAS, steps_offset=1, set_alpha_to_one=False)
    scheduler.set_timesteps(5)
    abar = _alphas_cumprod()
    expected = [((1 - abar[t]) / abar[t]).sqrt().item() for t in scheduler.timesteps.tolist() + [0]]
    assert scheduler.timesteps.tolist() == [801, 601, 401, 201, 1]
    # diffusers keeps alphas_cumprod in float32, the schedule in float64: ~1e-5 relative apart
    assert denoiser.sigmas(5, "leading").tolist() == pytest.approx(expected, rel=5e-5)
    assert denoiser.sigmas(5, "leading")[-1].item() == pytest.approx(0.0292, abs=1e-4)
    assert denoiser.sigmas(5, "leading", final_sigma=0.0)[-1].item() == 0.0
    turbo = denoiser.sigmas(1, "trailing")  # SD-Turbo: one step at t = 999
    assert denoiser.timesteps(turbo[:1]).item() == pytest.approx(999.0, abs=1e-6)


def test_guided_rows_alone_equal_rows_inside_a_batch_of_four() -> None:
    from pipelines.conditioning import GuidedConditioning
    from pipelines.guidance import cfg
    from pipelines.text import encode_with_negative
    from pipelines.tiny import tiny_sd1

    model = tiny_sd1(seed=0)
    prompts = ["a red circle", "a blue square", "two stars", "a cat"]
    cond, uncond, _ = encode_with_negative(model.text_encoder, prompts, ["", "blurry", "", ""])
    sigma = torch.tensor([14.6, 3.0, 0.5, 1.0], dtype=torch.float64)  # each request at its own step
    prior = (sigma**2 + 1).sqrt().float().view(-1, 1, 1, 1)
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * prior
    w = torch.tensor([7.5, 1.0, 3.0, 5.0])
    guided = cfg(model.denoiser)
    batch = guided(x, sigma, GuidedConditioning(cond, uncond, w))
    for i in range(4):
        alone = guided(x[i : i + 1], sigma[i : i + 1], GuidedConditioning(cond.rows(slice(i, i + 1)), uncond.rows(slice(i, i + 1)), w[i : i + 1]))
        # fp32 batched matmuls round differently (~1e-6 per eps here, whatever the thread count); guidance
        # eps_u + w (eps_c - eps_u) amplifies the two rows' differences by up to |1 - w| + |w|, and
        # x0 = x - sigma eps by sigma (2 CPU threads: 1.6e-4 at sigma 14.6, w 7.5, above the bound of sigma alone)
        amplification = max(1.0, float(sigma[i])) * (abs(1 - float(w[i])) + abs(float(w[i])))
        assert (alone - batch[i : i + 1]).abs().max().item() <= 5e-6 * amplification


def test_clip_sample_clamps_x0_as_ddim_does() -> None:
    config = DiscreteScheduleConfig.from_dict({"clip_sample": True, "clip_sample_range": 1.5})
    unet = StubUNet(torch.tensor([-3.0, 0.1, 3.0, 0.0]).view(1, 4, 1, 1))
    denoiser = LatentUNetDenoiser(unet, config, latent_factor=8)
    x0 = denoiser(torch.zeros(1, 4, 1, 1), torch.ones(1, dtype=torch.float64), Conditioning(text_embeddings=torch.zeros(1, 1, 8)))
    # eps prediction at sigma 1: x0 = -eps, then clamped to +-1.5
    assert x0.flatten().tolist() == pytest.approx([1.5, -0.1, -1.5, 0.0])


def test_lcm_sigmas_follow_the_configured_distillation_grid() -> None:
    config = DiscreteScheduleConfig.from_dict({"original_inference_steps": 25})
    denoiser = LatentUNetDenoiser(StubUNet(torch.zeros(1)), config, latent_factor=8)
    scheduler = LCMScheduler(**SD_BETAS, original_inference_steps=25)
    scheduler.set_timesteps(4)
    t = denoiser.timesteps(denoiser.sigmas(4, "lcm", final_sigma=0.0)[:-1])
    assert t.round().tolist() == [float(v) for v in scheduler.timesteps.tolist()]


def test_timesteps_equal_the_schedules_sigma_to_t() -> None:
    denoiser = LatentUNetDenoiser(StubUNet(torch.zeros(1)), DiscreteScheduleConfig(), latent_factor=8)
    sigma = torch.tensor([0.01, 0.0292, 0.5, 1.0, 5.0, 14.6146, 20.0], dtype=torch.float64)
    assert torch.equal(denoiser.timesteps(sigma), denoiser.schedule.sigma_to_t(sigma))
    table = denoiser.schedule.sigmas[[0, 1, 500, 999]]
    assert denoiser.timesteps(table).tolist() == pytest.approx([0.0, 1.0, 500.0, 999.0], abs=1e-9)
