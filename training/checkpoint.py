"""Stage checkpoints: weights as safetensors, optimizer state, loss history and a loss plot.

A stage directory holds `<name>.safetensors` per module (fp32 training weights, plus `ema_<name>`
where the stage keeps an EMA), `optimizer.pt` (trusted local training state only; never shipped),
`state.json` (step, elapsed seconds, loss history, stage metrics) and `loss.png`; a one-step student whose UNet
is not the teacher's (training.grow) also `student_config.json`, its architecture.
A stage resumes from whatever of these exists; missing optimizer state just restarts AdamW.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

STUDENT_CONFIG = "student_config.json"  # a stage's student UNet config, where it is not the teacher's


@dataclass
class StageState:
    """Progress of one stage; `losses` holds (step, value) per logged name."""

    step: int = 0
    elapsed_s: float = 0.0
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    metrics: dict[str, float | str | list[float]] = field(default_factory=dict)

    def log(self, name: str, value: float) -> None:
        self.losses.setdefault(name, []).append((self.step, float(value)))


def load_weights(module: nn.Module, path: Path) -> bool:
    """Load a safetensors state dict into `module` (any float dtype); False when absent."""
    if not path.exists():
        return False
    state = load_file(str(path))
    own = module.state_dict()
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return True


def save_weights(module: nn.Module, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Save `module`'s state dict as safetensors in `dtype` (contiguous CPU copies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path))


def load_state(directory: Path) -> StageState:
    """The stage's saved progress, or a fresh state."""
    path = directory / "state.json"
    if not path.exists():
        return StageState()
    raw = json.loads(path.read_text())
    return StageState(
        step=raw["step"],
        elapsed_s=raw["elapsed_s"],
        losses={k: [tuple(p) for p in v] for k, v in raw["losses"].items()},  # type: ignore[misc]
        metrics=raw.get("metrics", {}),
    )


def save_state(directory: Path, state: StageState, title: str) -> None:
    """Write state.json and the loss plot."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(
        json.dumps({"step": state.step, "elapsed_s": state.elapsed_s, "losses": state.losses, "metrics": state.metrics}, indent=1)
    )
    plot_losses(state, directory / "loss.png", title)


def smoothed(points: list[tuple[int, float]], window: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, running mean) of a logged series: the window is at most `window` logs and at most a fifth of
    the series, so a short run keeps its shape (a window as long as the series would leave one point)."""
    steps = torch.tensor([p[0] for p in points], dtype=torch.float64)
    values = torch.tensor([p[1] for p in points], dtype=torch.float64)
    k = max(1, min(window, len(values) // 5))
    smooth = torch.nn.functional.avg_pool1d(values.view(1, 1, -1), k, 1).view(-1)
    return steps[k - 1 :], smooth


def plot_losses(state: StageState, path: Path, title: str) -> None:
    """Loss curves (log scale, a running mean: `smoothed`) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in state.losses.items():
        if points:
            steps, smooth = smoothed(points)
            ax.plot(steps.numpy(), smooth.numpy(), label=name, marker="." if len(steps) < 20 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class Deadline:
    """A wall-clock budget in seconds from construction. With a stop_file, the budget ends when that file appears
    (a run ended early from outside still saves and evaluates as at its deadline)."""

    def __init__(self, seconds: float, stop_file: Path | None = None) -> None:
        self.start = time.monotonic()
        self.seconds = seconds
        self.stop_file = stop_file

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        if self.stop_file is not None and self.stop_file.exists():
            self.seconds, self.stop_file = self.elapsed(), None
        return self.seconds - self.elapsed()

    def passed(self) -> bool:
        return self.left() <= 0


def clipped_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable[nn.Parameter], max_norm: float = 1.0) -> None:
    """One optimizer update: gradients cleared (to None: parameters without one are left alone), `loss` backpropagated,
    their global norm clipped to `max_norm`, then the step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()


class EMA:
    """Exponential moving average of parameters, decay warmed up as min(d, (1+n)/(10+n)); warmup=False: d from the
    first update (the shadow starts at weights already worth keeping, such as a trained model being continued)."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.shadow = [p.detach().clone().float() for p in module.parameters()]
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in module.parameters()], 1 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for s, p in zip(self.shadow, module.parameters()):
            p.copy_(s.to(p.dtype))


def stage_parser(description: str, batch_help: str = "default: the GPU batch, or 8 on CPU") -> argparse.ArgumentParser:
    """The command line every training stage starts from: --out, --seconds, --device, --batch."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help=batch_help)
    return parser


def stage_main(
    description: str,
    stage: str,
    train: Callable[..., dict[str, float]],
    batch_help: str = "default: the GPU batch, or 8 on CPU",
) -> None:
    """The command line of a stage with no options of its own: stage_parser's -> train(...)."""
    args = stage_parser(description, batch_help).parse_args()
    print(stage, train(args.out, args.seconds, torch.device(args.device), batch=args.batch), flush=True)
