"""training/sample_flow.py: the one-step student's latents moved along DMD's gradient, judged as they go."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_samples_move_only_where_the_two_scores_differ(tmp_path: Path) -> None:
    from training.export import import_weights
    from training.sample_flow import sample_flow

    torch.set_num_threads(2)
    import_weights(ROOT / "weights", tmp_path)
    unet = ROOT / "weights" / "bundled_turbo" / "unet"
    # w = 1 with the teacher as fake score: one and the same denoiser (in a batch of other rows), so DMD's gradient is
    # zero up to float rounding and nothing moves
    still = sample_flow(tmp_path, unet, None, 8, 2, 0.5, 1, (20, 980), guidance=1.0, draws=2, batch=4)
    assert [r[0] for r in still] == [0, 1, 2]
    assert all(r[3] < 1e-4 and r[1] == still[0][1] for r in still)
    # w = 6: the guided teacher pulls the samples away from the unguided one's x0
    moved = sample_flow(tmp_path, unet, None, 8, 2, 0.5, 2, (20, 980), guidance=6.0, batch=4)
    assert [r[0] for r in moved] == [0, 2] and moved[0][3] == 0.0 and moved[1][3] > 0.01
    assert all(0.0 <= r[1] <= 1.0 for r in moved)
    with pytest.raises(ValueError, match="t_range"):
        sample_flow(tmp_path, unet, None, 8, 1, 0.5, 1, (500, 20), guidance=6.0)


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_along_the_gan_term_each_sample_moves_by_the_step_where_the_classifier_has_a_gradient(tmp_path: Path) -> None:
    """--direction gan: the critic's classifier pulls each sample by exactly `step` in mean |dx| per iteration (the
    gradient scaled per sample), nowhere where its logit is flat; it needs a critic that holds a classifier."""
    from safetensors.torch import save_file

    from training.distill_dmd import MidFeatureClassifier
    from training.export import import_weights
    from training.sample_flow import sample_flow

    torch.set_num_threads(2)
    import_weights(ROOT / "weights", tmp_path / "run")
    unet = ROOT / "weights" / "bundled_turbo" / "unet"
    critic = tmp_path / "critic"
    critic.mkdir()
    with pytest.raises(ValueError, match="critic"):
        sample_flow(tmp_path / "run", unet, None, 4, 1, 0.1, 1, (20, 980), guidance=6.0, direction="gan")
    with pytest.raises(FileNotFoundError, match="classifier"):
        sample_flow(tmp_path / "run", unet, critic, 4, 1, 0.1, 1, (20, 980), guidance=6.0, direction="gan")
    save_file({k: torch.zeros_like(v) for k, v in MidFeatureClassifier().state_dict().items()}, str(critic / "classifier.safetensors"))
    flat = sample_flow(tmp_path / "run", unet, critic, 4, 1, 0.1, 1, (20, 980), guidance=6.0, batch=4, direction="gan")
    assert flat[1][3] == 0.0  # a zero classifier: the same logit everywhere, no pull
    torch.manual_seed(0)
    save_file({k: torch.randn_like(v) * 0.05 for k, v in MidFeatureClassifier().state_dict().items()},
              str(critic / "classifier.safetensors"))
    pulled = sample_flow(tmp_path / "run", unet, critic, 4, 1, 0.1, 1, (20, 980), guidance=6.0, batch=4, direction="gan")
    assert abs(pulled[1][3] - 0.1) < 1e-5 and 0.0 <= pulled[1][1] <= 1.0
