"""training/distill_refine.py: the teacher's re-solve that the one-step student regresses on, and a
short run of the stage on the shipped weights exported as a servable one-step student."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from training.diffusion import alphas_cumprod, even_timesteps
from training.distill_refine import refine


class AgreeingTeacher:
    """A 'teacher' whose eps at every step points at `x0`: its DDIM solve from any x_t ends on x0."""

    def __init__(self, x0: Tensor) -> None:
        self.x0, self.alpha_bar = x0, alphas_cumprod().float()
        self.unet = self._eps

    def _eps(self, x_t: Tensor, t: Tensor, encoder_hidden_states: Tensor) -> SimpleNamespace:
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        return SimpleNamespace(sample=(x_t - a.sqrt() * torch.cat((self.x0, self.x0))) / (1 - a).sqrt())


def test_even_timesteps_descend_from_the_start() -> None:
    assert even_timesteps(999, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert even_timesteps(800, 8)[0] == 800 and even_timesteps(800, 8)[-1] == 99
    assert even_timesteps(500, 1) == [500]


@pytest.mark.parametrize("start,steps", [(999, 10), (780, 8), (300, 3)])
def test_refine_keeps_a_sample_the_teacher_agrees_with(start: int, steps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x, noise = torch.randn(3, 4, 16, 16, generator=gen), torch.randn(3, 4, 16, 16, generator=gen)
    target = refine(AgreeingTeacher(x), x, noise, torch.zeros(6, 77, 128), start, steps, alphas_cumprod())  # type: ignore[arg-type]
    assert torch.allclose(target, x, atol=1e-4)  # the regression's fixed point: nothing to correct


def test_refine_moves_toward_the_teachers_sample() -> None:
    gen = torch.Generator().manual_seed(1)
    x, wanted, noise = (torch.randn(2, 4, 16, 16, generator=gen) for _ in range(3))
    target = refine(AgreeingTeacher(wanted), x, noise, torch.zeros(4, 77, 128), 800, 8, alphas_cumprod())  # type: ignore[arg-type]
    assert torch.allclose(target, wanted, atol=1e-4)
    again = refine(AgreeingTeacher(wanted), x, noise, torch.zeros(4, 77, 128), 800, 8, alphas_cumprod())  # type: ignore[arg-type]
    assert torch.equal(target, again)  # a deterministic function of (x, noise)


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_a_short_run_exports_a_servable_one_step_student(tmp_path: Path) -> None:
    """The stage trains from the shipped student against the shipped teacher, logs its regression,
    and its export loads through the manifest as bundled-turbo and samples with `turbo`."""
    from pipelines.loading import load_from_manifest
    from server.commands.eval import generate
    from training.checkpoint import load_state
    from training.distill_refine import STAGE, train
    from training.export import import_weights
    from training.export_students import export_turbo

    run, weights = tmp_path / "run", tmp_path / "weights"
    import_weights(ROOT / "weights", run)
    metrics = train(run, 12.0, torch.device("cpu"), batch=2, t_start=780, teacher_steps=2,
                    init_unet=ROOT / "weights" / "bundled_turbo" / "unet", eval_count=2)
    state = load_state(run / STAGE)
    assert state.step > 0 and state.metrics["init"] == "unet:bundled_turbo"
    assert metrics["export"] in ("ema_student", "student", "best_ema_student")
    assert (run / STAGE / "loss.png").exists()
    export_turbo(run, weights, STAGE, ROOT / "weights_manifest.yaml")
    student = load_from_manifest("bundled-turbo", weights / "manifest.yaml", weights, device="cpu", dtype=torch.float32)
    images = generate(student, ["a small red circle left of a blue square"], "turbo", 1, 1.0, seed=0)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()
    # --checkpoint: the named weights of the stage instead of its evaluation's choice (each EMA for a soup)
    from safetensors.torch import load_file

    for checkpoint in ("student", "ema_student"):
        export_turbo(run, tmp_path / checkpoint, STAGE, ROOT / "weights_manifest.yaml", checkpoint=checkpoint)
        shipped = {}
        for shard in sorted((tmp_path / checkpoint / "bundled_turbo" / "unet").glob("*.safetensors")):
            shipped.update(load_file(shard))
        trained = load_file(run / STAGE / f"{checkpoint}.safetensors")
        assert shipped.keys() == trained.keys()
        assert all(torch.equal(shipped[k], trained[k].half()) for k in trained)
