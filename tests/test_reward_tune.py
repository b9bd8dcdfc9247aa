"""training/reward_tune.py: the shipped student fine-tuned on a reward model's caption likelihood, probed by the judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_tuning_moves_the_student_only_with_a_step_and_saves_a_servable_unet(tmp_path: Path) -> None:
    from training.checkpoint import save_weights
    from training.export import import_weights
    from training.reward import STAGE, RewardModel
    from training.reward_tune import tune

    torch.set_num_threads(2)
    run = tmp_path / "run"
    import_weights(ROOT / "weights", run)
    unet = ROOT / "weights" / "bundled_turbo" / "unet"
    with pytest.raises(FileNotFoundError, match="reward"):
        tune(run, unet, tmp_path / "none", 1, 2, 1e-4, 0.0, 1, torch.device("cpu"), probe_captions=4)
    torch.manual_seed(0)
    (run / STAGE).mkdir()
    save_weights(RewardModel(), run / STAGE / f"{STAGE}.safetensors")
    still = tune(run, unet, tmp_path / "still", 2, 2, 0.0, 0.0, 1, torch.device("cpu"), probe_captions=8)
    assert [r["step"] for r in still] == [0, 1, 2] and all(r["moved"] < 1e-5 for r in still)
    assert all(r["accuracy"] == still[0]["accuracy"] for r in still)
    moved = tune(run, unet, tmp_path / "moved", 2, 2, 1e-4, 1.0, 2, torch.device("cpu"), probe_captions=8)
    assert [r["step"] for r in moved] == [0, 2] and moved[0]["moved"] == 0.0 and moved[1]["moved"] > 1e-3
    assert 0.0 < moved[1]["reward"] <= 1.0 and 0.0 <= moved[1]["accuracy"] <= 1.0
    record = json.loads((tmp_path / "moved" / "reward_tune.json").read_text())
    assert record["settings"]["anchor"] == 1.0 and len(record["rows"]) == 2
    shards = sorted((tmp_path / "moved" / "unet").glob("*.safetensors"))
    assert shards and all(v.dtype == torch.float16 for shard in shards for v in load_file(str(shard)).values())
    tuned = UNet2DConditionModel.from_pretrained(tmp_path / "moved" / "unet")
    shipped = UNet2DConditionModel.from_pretrained(unet)
    assert any((a.float() - b.float()).abs().max() > 0 for a, b in zip(tuned.parameters(), shipped.parameters()))
