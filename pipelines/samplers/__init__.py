"""Samplers as generators, and `run` to drive one request alone.

A sampler is a generator function `sample_<name>(x, sigmas, *, noise, ...)`: it yields
`(x, sigma)` each time it needs the model and receives x0 = E[x0 | x] back:

    x0 = yield x, sigma

`x` is (N, C, H, W) in the variance-exploding view (x = x0 + sigma * eps); `sigma` is a 0-d
float64 tensor; `sigmas` is a descending 1-d float64 tensor from a schedule function
(pipelines.schedules), whose last entry is where sampling stops (0, or the schedule's smallest
sigma). `noise()` returns a fresh standard normal tensor shaped like x from the request's own
seeded generator: the only source of randomness. The generator returns the final x.

The registry below: `SAMPLERS` maps each public name (and the alias "turbo") to a
`SamplerSpec`; `make_sampler` builds one request's generator with its options checked, and
`validate_steps` / `validate_sigmas` raise ValueError naming the bad parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import torch
from torch import Tensor

from pipelines.conditioning import to_device

NoiseFn = Callable[[], Tensor]
Sampler = Generator[tuple[Tensor, Tensor], Tensor, Tensor]


def seeded_noise(like: Tensor, generator: torch.Generator) -> NoiseFn:
    """A noise function drawing from `generator` (on the generator's device) shaped like `like`."""

    def noise() -> Tensor:
        z = torch.randn(like.shape, generator=generator, device=generator.device, dtype=torch.float32)
        return to_device(z, like.device).to(like.dtype)

    return noise


def run(sampler: Sampler, denoise: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Drive one sampler alone: `denoise(x, sigma_rows)` with sigma broadcast to x's rows."""
    try:
        x, sigma = next(sampler)
        while True:
            sigma_rows = to_device(sigma.to(torch.float64).expand(x.shape[0]), x.device)
            x, sigma = sampler.send(denoise(x, sigma_rows))
    except StopIteration as stop:
        return stop.value


# The registry. Sampler modules import NoiseFn / Sampler from this package, so they are
# imported only after those names exist.
import math
from dataclasses import dataclass

from pipelines.samplers.ddim import sample_ddim
from pipelines.samplers.ddpm import sample_ddpm
from pipelines.samplers.dpmpp_2m import sample_dpmpp_2m
from pipelines.samplers.euler import sample_euler, sample_euler_ancestral
from pipelines.samplers.flow_euler import sample_flow_euler
from pipelines.samplers.heun import sample_heun
from pipelines.samplers.lcm import sample_lcm
from pipelines.samplers.onestep import sample_onestep
from pipelines.samplers.pc import sample_pc

MAX_STEPS = 1000  # no training schedule has more timesteps than this


@dataclass(frozen=True)
class SamplerSpec:
    """One registered sampler: its generator function and what callers need to know to drive it."""

    name: str  # canonical name (aliases map to the same spec)
    fn: Callable[..., Sampler]  # sample_<name>(x, sigmas, *, noise, <options>)
    default_spacing: str  # a pipelines.schedules.SPACINGS entry, used when the request names none
    # model calls per step, at most (heun: 2; pc: 1 + corrector_steps, with the default 1)
    evaluations_per_step: int
    stochastic: bool  # draws noise() after the initial sample (with default options)
    min_steps: int
    max_steps: int
    options: tuple[str, ...]  # keyword options make_sampler accepts for it
    description: str


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec(
            name="ddim",
            fn=sample_ddim,
            default_spacing="leading",
            evaluations_per_step=1,
            stochastic=False,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=("eta",),
            description="DDIM (Song et al. 2021); eta=0 deterministic, eta>0 adds fresh noise",
        ),
        SamplerSpec(
            name="ddpm",
            fn=sample_ddpm,
            default_spacing="leading",
            evaluations_per_step=1,
            stochastic=True,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=(),
            description="ancestral DDPM: reverse SDE by Euler-Maruyama (Song et al. 2021, eq. 6)",
        ),
        SamplerSpec(
            name="heun",
            fn=sample_heun,
            default_spacing="karras",
            evaluations_per_step=2,
            stochastic=False,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=(),
            description="probability-flow ODE, Heun's 2nd order (Karras et al. 2022, Alg. 2)",
        ),
        SamplerSpec(
            name="dpmpp_2m",
            fn=sample_dpmpp_2m,
            default_spacing="karras",
            evaluations_per_step=1,
            stochastic=False,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=("lower_order_final",),
            description="DPM-Solver++(2M) (Lu et al. 2022)",
        ),
        SamplerSpec(
            name="pc",
            fn=sample_pc,
            default_spacing="leading",
            evaluations_per_step=2,
            stochastic=True,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=("predictor", "snr", "corrector_steps"),
            description="predictor-corrector, Langevin corrector (Song et al. 2021, Alg. 1 and 4)",
        ),
        SamplerSpec(
            name="euler",
            fn=sample_euler,
            default_spacing="leading",
            evaluations_per_step=1,
            stochastic=False,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=(),
            description="Euler on the probability-flow ODE (Karras et al. 2022)",
        ),
        SamplerSpec(
            name="euler_ancestral",
            fn=sample_euler_ancestral,
            default_spacing="leading",
            evaluations_per_step=1,
            stochastic=True,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=("eta",),
            description="Euler ancestral: ODE step down, fresh noise up",
        ),
        SamplerSpec(
            name="flow_euler",
            fn=sample_flow_euler,
            default_spacing="flow",
            evaluations_per_step=1,
            stochastic=False,
            min_steps=1,
            max_steps=MAX_STEPS,
            options=(),
            description="Euler in flow time for flow-matching models (Esser et al. 2024)",
        ),
        SamplerSpec(
            name="lcm",
            fn=sample_lcm,
            default_spacing="lcm",
            evaluations_per_step=1,
            stochastic=True,
            min_steps=1,
            max_steps=50,
            options=(),
            description="consistency / LCM multistep: x0, then re-noise (Song et al. 2023, Alg. 1)",
        ),
        SamplerSpec(
            name="onestep",
            fn=sample_onestep,
            default_spacing="trailing",
            evaluations_per_step=1,
            stochastic=False,
            min_steps=1,
            max_steps=1,
            options=(),
            description="one evaluation at the top sigma (SD-Turbo / ADD, Sauer et al. 2023)",
        ),
    )
}
SAMPLERS["turbo"] = SAMPLERS["onestep"]

# samplers that can serve as the predictor of "pc": one step over [sigma, sigma_next] stands alone
PC_PREDICTORS = ("ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m")


def sampler_spec(name: str) -> SamplerSpec:
    """The registered spec of `name` (aliases included), or ValueError naming `sampler`."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name]


def validate_steps(name: str, steps: int) -> None:
    """Raise ValueError naming `steps` unless it is an integer in the sampler's [min_steps, max_steps]."""
    spec = sampler_spec(name)
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise ValueError(f"steps must be an integer, got {steps!r}")  # noqa: TRY004 (a 4xx, like every bad input)
    if steps < spec.min_steps:
        raise ValueError(f"steps must be >= {spec.min_steps} for sampler {name!r}, got {steps}")
    if steps > spec.max_steps:
        raise ValueError(f"steps must be <= {spec.max_steps} for sampler {name!r}, got {steps}")


def validate_sigmas(sigmas: Tensor) -> None:
    """Raise ValueError naming `sigmas` unless it is a finite, strictly descending 1-d tensor ending >= 0."""
    if not isinstance(sigmas, Tensor) or sigmas.dim() != 1 or sigmas.numel() < 2:
        shape = tuple(sigmas.shape) if isinstance(sigmas, Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas must be a 1-d tensor of >= 2 entries, got {shape}")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError("sigmas must be finite")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("sigmas must be strictly descending")
    if float(sigmas[-1]) < 0:
        raise ValueError(f"sigmas must end at a value >= 0, got {float(sigmas[-1])}")


def _fraction(param: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise ValueError(f"{param} must be a finite number in [0, 1], got {value!r}")
    return float(value)


def make_sampler(
    name: str,
    x: Tensor,
    sigmas: Tensor,
    noise: NoiseFn,
    *,
    eta: float | None = None,
    lower_order_final: bool | None = None,
    predictor: str | None = None,
    snr: float | None = None,
    corrector_steps: int | None = None,
) -> Sampler:
    """The (unstarted) generator of sampler `name` over x (N, ...) and `sigmas`; None options take its defaults.

    Raises ValueError naming the parameter: unknown sampler, an option the sampler does not
    take, an option out of range, bad sigmas, or a step count out of the sampler's range.
    """
    spec = sampler_spec(name)
    validate_sigmas(sigmas)
    validate_steps(name, len(sigmas) - 1)
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ValueError("x must be a tensor with at least one row")
    given = {
        "eta": eta,
        "lower_order_final": lower_order_final,
        "predictor": predictor,
        "snr": snr,
        "corrector_steps": corrector_steps,
    }
    for param, value in given.items():
        if value is not None and param not in spec.options:
            raise ValueError(
                f"{param} is not an option of sampler {name!r} (options: {list(spec.options) or 'none'})"
            )
    if spec.name == "ddim":
        return sample_ddim(
            x, sigmas, noise=noise, eta=_fraction("eta", 0.0 if eta is None else eta)
        )
    if spec.name == "euler_ancestral":
        return sample_euler_ancestral(
            x, sigmas, noise=noise, eta=_fraction("eta", 1.0 if eta is None else eta)
        )
    if spec.name == "dpmpp_2m":
        if lower_order_final is not None and not isinstance(lower_order_final, bool):
            raise ValueError(f"lower_order_final must be a bool, got {lower_order_final!r}")
        return sample_dpmpp_2m(
            x, sigmas, noise=noise, lower_order_final=lower_order_final is not False
        )
    if spec.name == "pc":
        predictor_name = "ddpm" if predictor is None else predictor
        if predictor_name not in PC_PREDICTORS:
            raise ValueError(
                f"predictor must be one of {list(PC_PREDICTORS)}, got {predictor_name!r}"
            )
        snr_value = 0.16 if snr is None else snr
        if (
            isinstance(snr_value, bool)
            or not isinstance(snr_value, (int, float))
            or not (math.isfinite(snr_value) and snr_value > 0)
        ):
            raise ValueError(f"snr must be a finite number > 0, got {snr_value!r}")
        m = 1 if corrector_steps is None else corrector_steps
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= 100:
            raise ValueError(f"corrector_steps must be an integer in [0, 100], got {m!r}")
        return sample_pc(
            x,
            sigmas,
            noise=noise,
            predictor=SAMPLERS[predictor_name].fn,
            snr=float(snr_value),
            corrector_steps=m,
        )
    return spec.fn(x, sigmas, noise=noise)
