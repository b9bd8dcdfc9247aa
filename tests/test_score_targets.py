"""training/score_targets.py: judge accuracy of the teacher's and the fake score's one-evaluation x0 of the one-step
student's noised samples, per timestep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_unguided_teacher_and_the_teacher_as_fake_score_are_judged_alike(tmp_path: Path) -> None:
    from training.export import import_weights
    from training.score_targets import score_targets

    torch.set_num_threads(2)
    import_weights(ROOT / "weights", tmp_path)
    rows = score_targets(tmp_path, ROOT / "weights" / "bundled_turbo" / "unet", None, 8, [100, 600], guidance=1.0, batch=4)
    assert [r[0] for r in rows] == ["the student's samples", "t = 100", "t = 600"]
    for _, real, fake, real3, fake3 in rows:  # w = 1 and the teacher as fake score: one and the same denoiser
        assert 0.0 <= real <= 1.0 and real == fake and (real3 == fake3 or math.isnan(real3))
