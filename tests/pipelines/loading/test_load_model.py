"""End to end: `load_from_manifest` -> LoadedModel (pipelines.models.assemble) gives the same image
as the modules it was saved from, for single files and diffusers folders; ControlNets attach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines.loading import load_from_manifest
from pipelines.loading.loader import family_spec
from pipelines.manifest import load_manifest
from pipelines.models import assemble
from pipelines.samplers import SAMPLERS, validate_steps
from pipelines.text_to_image import text_to_image
from tests.pipelines.loading.test_roundtrip import original_checkpoint
from tests.pipelines.loading.tiny_checkpoints import (
    SCHEDULER,
    TINY_ARCHITECTURES,
    listed_files,
    save_diffusers_folder,
    write_manifest,
    write_safetensors,
)


def _entry(model_id: str, family: str, fmt: str, folder: Path, **extra: object) -> dict:
    return {"id": model_id, "family": family, "format": fmt, "path": folder.name,
            "files": listed_files(folder), "dtype": "float16",
            "defaults": {"sampler": "ddim", "steps": 2, "guidance": 3.0, "width": 16, "height": 16},
            "limits": {"min_side": 16, "max_side": 128, "max_pixels": 16384, "max_steps": 50},
            "description": f"tiny {family}", **extra}


@pytest.mark.parametrize("family, fmt", [("sd1", "single_file"), ("sdxl", "diffusers")])
def test_load_from_manifest_generates_same_image(family: str, fmt: str, tiny_models, tmp_path: Path) -> None:
    modules = tiny_models[family]
    root = tmp_path / "weights"
    folder = root / family
    if fmt == "single_file":
        write_safetensors(folder / f"{family}.safetensors", original_checkpoint(modules, family))
        (folder / "arch.json").write_text(json.dumps(TINY_ARCHITECTURES[family]))
        entry = _entry(family, family, fmt, folder, config="arch.json")
    else:
        save_diffusers_folder(modules, folder, family)
        entry = _entry(family, family, fmt, folder)
    manifest_path = write_manifest(tmp_path / "m.yaml", [entry])

    loaded = load_from_manifest(None, manifest_path, root, device="cpu")
    assert loaded.id == family and loaded.dtype == torch.float32  # fp16 manifest dtype -> fp32 on CPU
    assert (loaded.family.default_steps, loaded.family.default_guidance) == (2, 3.0)
    assert (loaded.family.max_side, loaded.family.max_pixels) == (128, 16384)
    assert loaded.description == f"tiny {family}"

    spec = family_spec(load_manifest(manifest_path).models[0])
    reference = assemble(spec, dict(modules), dict(SCHEDULER), model_id="ref", device="cpu", dtype=torch.float32)
    kwargs = {"seed": 7, "steps": 2, "guidance": 3.0, "width": 16, "height": 16, "sampler": "ddim"}
    image, _ = text_to_image(loaded, "a red circle", **kwargs)
    expected, _ = text_to_image(reference, "a red circle", **kwargs)
    assert image.shape == (1, 3, 16, 16)
    assert torch.equal(image, expected)
    assert float(image.std()) > 0


def test_controlnet_attaches_and_missing_controlnet_is_skipped(tiny_models, tmp_path: Path, caplog) -> None:
    root = tmp_path / "weights"
    save_diffusers_folder(tiny_models["sd1"], root / "base", "sd1")
    save_diffusers_folder(tiny_models["controlnet"], root / "canny", "controlnet")
    base = _entry("base", "sd1", "diffusers", root / "base", controlnets=["canny"])
    control = {"id": "canny", "family": "sd1", "kind": "controlnet", "format": "diffusers",
               "path": "canny", "files": listed_files(root / "canny")}
    manifest_path = write_manifest(tmp_path / "m.yaml", [base, control])
    loaded = load_from_manifest("base", manifest_path, root)
    assert list(loaded.controlnets) == ["canny"]
    got = loaded.controlnets["canny"].controlnet_down_blocks[0].weight
    assert torch.equal(got, tiny_models["controlnet"]["controlnet"].controlnet_down_blocks[0].weight)

    # the ControlNet's files absent: the base model still loads, and the log says why
    for p in (root / "canny").iterdir():
        p.unlink()
    (root / "canny").rmdir()
    loaded = load_from_manifest("base", manifest_path, root)
    assert loaded.controlnets == {}
    assert "controlnet canny not loaded" in caplog.text


def test_bundled_default_absent_fails_clearly(tmp_path: Path) -> None:
    """Until engineer E's files land, loading the bundled default says what is missing."""
    from pipelines.loading import MissingWeightsError

    with pytest.raises(MissingWeightsError, match=r"'bundled'.*not found under weights root"):
        load_from_manifest(None, None, tmp_path / "empty-root")


def test_repository_manifest_defaults_are_valid_samplers_and_steps() -> None:
    for entry in load_manifest().pipelines():
        assert entry.defaults.sampler in SAMPLERS, entry.id
        validate_steps(entry.defaults.sampler, entry.defaults.steps)
