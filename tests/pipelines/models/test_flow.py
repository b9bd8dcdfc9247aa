"""Flow-matching wrapper: x_t = (1 - t) x0 + t eps, sigma = t / (1 - t), x0 = x_t - t v."""

from __future__ import annotations

import torch
from torch import Tensor

from pipelines.conditioning import Conditioning
from pipelines.models.flow import FlowDenoiser
from pipelines.samplers import make_sampler, run, seeded_noise


def test_exact_velocity_recovers_x0_and_sees_x_t() -> None:
    gen = torch.Generator().manual_seed(0)
    x0_true = torch.randn(3, 4, 2, 2, generator=gen)
    eps = torch.randn(3, 4, 2, 2, generator=gen)
    t = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    seen: dict[str, Tensor] = {}

    def velocity(x_t: Tensor, t_rows: Tensor, cond: Conditioning) -> Tensor:
        seen["x_t"], seen["t"] = x_t, t_rows
        return eps - x0_true  # the true velocity of this straight path

    denoiser = FlowDenoiser(velocity)
    sigma = t / (1 - t)
    shape = (-1, 1, 1, 1)
    x_t = (1 - t.float()).view(shape) * x0_true + t.float().view(shape) * eps
    x = x0_true + sigma.float().view(shape) * eps  # the VE view of the same point
    x0 = denoiser(x, sigma, Conditioning())
    assert torch.allclose(seen["x_t"], x_t, atol=1e-5)
    assert torch.allclose(seen["t"].double(), t, atol=1e-6)
    assert torch.allclose(x0, x0_true, atol=1e-5)
    assert torch.allclose(denoiser.to_decoder_input(x[:1], float(sigma[0])), x_t[:1], atol=1e-5)
    assert denoiser.prior_scale(3.0) == 4.0


def test_ddim_on_flow_sigmas_is_the_flow_euler_step() -> None:
    # a velocity linear in x_t: Euler in flow time and DDIM in the VE view must agree exactly
    def velocity(x_t: Tensor, t_rows: Tensor, cond: Conditioning) -> Tensor:
        return 0.7 * x_t - 0.3 + t_rows.view(-1, 1, 1, 1)

    denoiser = FlowDenoiser(velocity, shift=3.0)
    sigmas = denoiser.sigmas(6)
    assert sigmas[-1].item() == 0.0 and bool((sigmas[1:] < sigmas[:-1]).all())
    noise0 = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    x = noise0 * denoiser.prior_scale(float(sigmas[0]))
    out = run(make_sampler("ddim", x, sigmas, seeded_noise(x, torch.Generator())), lambda xs, s: denoiser(xs, s, Conditioning()))

    ts = sigmas / (1 + sigmas)
    x_t = x / (1 + sigmas[0].item())
    for i in range(len(ts) - 1):
        v = velocity(x_t, ts[i : i + 1].float(), Conditioning())
        x_t = x_t + (ts[i + 1] - ts[i]).item() * v
    assert torch.allclose(out, x_t, atol=1e-5)  # final sigma 0: x = x_t
