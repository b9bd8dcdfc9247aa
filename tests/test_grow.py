"""training/grow.py: a grown one-step student starts as the function it grew from, learns in its new
layers, and keeps its own architecture through a DMD run, its export and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from training.grow import grow_unet

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "weights" / "bundled_turbo" / "unet"
pytestmark = pytest.mark.skipif(not (STUDENT / "config.json").exists(), reason="no shipped student")


def _inputs(rows: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(rows, 4, 16, 16, generator=gen), torch.tensor([999.0, 300.0][:rows]), torch.randn(rows, 77, 128, generator=gen)


def test_a_grown_unet_computes_what_it_grew_from_and_learns_in_its_new_layers() -> None:
    unet = UNet2DConditionModel.from_pretrained(STUDENT).float().eval()
    grown = grow_unet(unet, [1, 1, 3]).eval()
    assert grown.config.transformer_layers_per_block == [1, 1, 3]
    assert len(grown.mid_block.attentions[0].transformer_blocks) == 3
    assert len(grown.up_blocks[0].attentions[1].transformer_blocks) == 3  # the mirrored 4x4 up block
    assert len(grown.down_blocks[1].attentions[0].transformer_blocks) == 1
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in unet.parameters())
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(grown(x, t, text).sample, unet(x, t, text).sample)
    # the zeroed projections get gradients at once: the new layers start learning from the first update
    grown.train()
    grown(x, t, text).sample.square().mean().backward()
    new_block = grown.mid_block.attentions[0].transformer_blocks[2]
    for linear in (new_block.attn1.to_out[0], new_block.attn2.to_out[0], new_block.ff.net[-1]):
        assert torch.equal(linear.weight, torch.zeros_like(linear.weight))
        assert linear.weight.grad is not None and linear.weight.grad.abs().max() > 0


def test_growing_keeps_every_layer_and_names_one_count_per_block() -> None:
    unet = UNet2DConditionModel.from_pretrained(STUDENT).float()
    with pytest.raises(ValueError, match="one layer count per down block"):
        grow_unet(unet, [1, 3])
    grown = grow_unet(unet, [1, 1, 2])
    with pytest.raises(ValueError, match="keeps every layer"):
        grow_unet(grown, [1, 1, 1])


def test_a_grown_student_trains_exports_and_serves_with_its_own_architecture(tmp_path: Path) -> None:
    """A DMD run from a grown UNet records its architecture, resumes into it, and exports it; served through the
    manifest as bundled-turbo it draws what the student it grew from draws (no update was taken)."""
    from pipelines.loading import load_from_manifest
    from server.commands.eval import generate
    from training.checkpoint import STUDENT_CONFIG
    from training.distill_dmd import STAGE, train
    from training.export import import_weights
    from training.export_students import export_turbo
    from training.one_step import student_architecture

    grown_dir = tmp_path / "grown"
    grow_unet(UNet2DConditionModel.from_pretrained(STUDENT).float(), [1, 1, 2]).save_pretrained(grown_dir)
    run, weights = tmp_path / "run", tmp_path / "weights"
    import_weights(ROOT / "weights", run)
    train(run, 0.0, torch.device("cpu"), batch=2, init_unet=grown_dir, gan_weight=0.05, eval_count=2, pool_size=16)
    recorded = json.loads((run / STAGE / STUDENT_CONFIG).read_text())
    assert recorded["transformer_layers_per_block"] == [1, 1, 2]
    teacher = UNet2DConditionModel.from_pretrained(ROOT / "weights" / "bundled" / "unet").float()
    resumed = student_architecture(teacher, run / STAGE, None)  # a resumed run (no init) builds the recorded one
    assert len(resumed.mid_block.attentions[0].transformer_blocks) == 2
    assert not (tmp_path / "plain" / STUDENT_CONFIG).exists()
    student_architecture(teacher, tmp_path / "plain", STUDENT)  # the shipped student has the teacher's architecture
    assert not (tmp_path / "plain" / STUDENT_CONFIG).exists()

    export_turbo(run, weights, STAGE, ROOT / "weights_manifest.yaml", checkpoint="student")
    assert UNet2DConditionModel.load_config(weights / "bundled_turbo" / "unet")["transformer_layers_per_block"] == [1, 1, 2]
    served = load_from_manifest("bundled-turbo", weights / "manifest.yaml", weights, device="cpu", dtype=torch.float32)
    shipped = load_from_manifest("bundled-turbo", ROOT / "weights_manifest.yaml", ROOT / "weights", device="cpu",
                                 dtype=torch.float32)
    prompts = ["a small red circle left of a blue square", "a large green triangle"]
    assert torch.equal(generate(served, prompts, "turbo", 1, 1.0, seed=0), generate(shipped, prompts, "turbo", 1, 1.0, seed=0))
