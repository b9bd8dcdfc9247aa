"""training/adam_first_step.py: one fresh AdamW update moves every weight by about lr (its first step is lr x sign(g))."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_first_update_moves_weights_by_the_learning_rate(tmp_path: Path) -> None:
    from training.adam_first_step import first_steps
    from training.export import import_weights

    torch.set_num_threads(2)
    import_weights(ROOT / "weights", tmp_path)
    rows = first_steps(tmp_path, ROOT / "weights" / "bundled_turbo" / "unet", None, 4, [2e-5, 0.0], batch=2)
    (start, _, accuracy), (_, moved, _), (_, unmoved, same) = rows
    assert start == "start" and 0.0 <= accuracy <= 1.0
    assert moved == pytest.approx(2e-5, rel=0.02)  # sign(g) x lr: the largest change is lr itself, whatever g's size
    assert unmoved == 0.0 and same == accuracy  # lr 0: the same weights, captions and noise give the same score
