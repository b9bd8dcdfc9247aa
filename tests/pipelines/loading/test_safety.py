"""Every refusal names the file: pickles, paths out of the root, missing / truncated / corrupt
files, wrong sha256, wrong tensor shapes; the hash cache avoids re-reading unchanged files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from pipelines.loading import (
    CheckpointKeyError,
    CorruptCheckpointError,
    HashMismatchError,
    MissingWeightsError,
    PathEscapeError,
    ShapeMismatchError,
    UnsafeFormatError,
    load_components,
    safety,
)
from pipelines.loading.diffusers_folder import weight_files
from pipelines.loading.safety import (
    HashCache,
    read_safetensors_header,
    resolve_inside,
    verify_sha256,
)
from pipelines.manifest import load_manifest
from tests.pipelines.loading.tiny_checkpoints import (
    TINY_ARCHITECTURES,
    listed_files,
    save_diffusers_folder,
    write_manifest,
    write_safetensors,
)

CPU = torch.device("cpu")


def _vae_entry(folder: str, files: list[dict], **extra: object) -> dict:
    return {"id": "m", "family": "sd1", "format": "diffusers", "path": folder, "files": files,
            "dtype": "float32", **extra}


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_formats_refused_with_file_and_conversion(suffix: str, tmp_path: Path) -> None:
    folder = tmp_path / "weights" / "m"
    folder.mkdir(parents=True)
    (folder / f"model{suffix}").write_bytes(b"not opened")
    entry = {"id": "m", "family": "sd1", "format": "diffusers", "path": "m",
             "files": [{"path": f"model{suffix}", "sha256": None}]}
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [entry]))
    with pytest.raises(UnsafeFormatError) as err:
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    message = str(err.value)
    assert f"m/model{suffix}" in message
    assert "safetensors" in message and "Convert" in message


def test_pickle_only_component_folder_refused(tmp_path: Path) -> None:
    """A diffusers folder whose unet has only a .bin names that file."""
    (tmp_path / "m" / "unet").mkdir(parents=True)
    (tmp_path / "m" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(UnsafeFormatError, match=r"m/unet/diffusion_pytorch_model\.bin"):
        weight_files(tmp_path, "m/unet", None)


def test_path_escape_dotdot_absolute_symlink(tmp_path: Path) -> None:
    root = tmp_path / "weights"
    (root / "m").mkdir(parents=True)
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    with pytest.raises(PathEscapeError, match=r"\.\./secret\.safetensors"):
        resolve_inside(root, "../secret.safetensors")
    with pytest.raises(PathEscapeError, match="absolute"):
        resolve_inside(root, str(outside))
    (root / "m" / "link.safetensors").symlink_to(outside)
    with pytest.raises(PathEscapeError, match=r"m/link\.safetensors.*outside the weights root"):
        resolve_inside(root, "m/link.safetensors")
    (root / "m" / "inside.safetensors").write_bytes(b"y")
    (root / "m" / "ok.safetensors").symlink_to(root / "m" / "inside.safetensors")
    assert resolve_inside(root, "m/ok.safetensors") == root / "m" / "ok.safetensors"


def test_symlinked_model_folder_pointing_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "m").symlink_to(tmp_path / "elsewhere")
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [_vae_entry("m", [])]))
    with pytest.raises(PathEscapeError, match="outside the weights root"):
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)


def test_shard_index_cannot_point_out_of_root(tmp_path: Path) -> None:
    root = tmp_path / "weights"
    sub = root / "m" / "text_encoder"
    sub.mkdir(parents=True)
    write_safetensors(tmp_path / "evil.safetensors", {"w": torch.zeros(1)})
    (sub / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../../evil.safetensors"}})
    )
    with pytest.raises(PathEscapeError, match=r"evil\.safetensors"):
        weight_files(root, "m/text_encoder", None)


def test_missing_folder_and_missing_file_named(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [_vae_entry("absent", [])]))
    with pytest.raises(MissingWeightsError, match=r"'absent'.*darkroom weights pull m"):
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    (tmp_path / "weights" / "present").mkdir()
    files = [{"path": "unet/diffusion_pytorch_model.safetensors", "sha256": None}]
    manifest = load_manifest(write_manifest(tmp_path / "m2.yaml", [_vae_entry("present", files)]))
    with pytest.raises(MissingWeightsError, match=r"present/unet/diffusion_pytorch_model\.safetensors"):
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)


def test_truncated_and_corrupt_safetensors_named(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"a": torch.randn(64, 64), "b": torch.randn(8)})
    data = path.read_bytes()
    assert set(read_safetensors_header(path)) == {"a", "b"}
    path.write_bytes(data[:-100])
    with pytest.raises(CorruptCheckpointError, match=r"w\.safetensors: truncated"):
        read_safetensors_header(path)
    path.write_bytes(data[:5])
    with pytest.raises(CorruptCheckpointError, match=r"w\.safetensors: truncated"):
        read_safetensors_header(path)
    path.write_bytes(data[:8] + b"{not json" + data[17:])
    with pytest.raises(CorruptCheckpointError, match=r"w\.safetensors: corrupt safetensors header"):
        read_safetensors_header(path)


def test_truncated_checkpoint_fails_loading_with_file_named(tiny_models, tmp_path: Path) -> None:
    folder = tmp_path / "weights" / "m"
    save_diffusers_folder(tiny_models["sd1"], folder, "sd1")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [_vae_entry("m", listed_files(folder))]))
    with pytest.raises(CorruptCheckpointError, match=r"m/vae/diffusion_pytorch_model\.safetensors"):
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)


def test_wrong_sha256_names_file_expected_and_actual(tmp_path: Path) -> None:
    folder = tmp_path / "weights" / "m"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    actual = hashlib.sha256(b"{}").hexdigest()
    files = [{"path": "model_index.json", "sha256": "0" * 64}]
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [_vae_entry("m", files)]))
    with pytest.raises(HashMismatchError) as err:
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    assert "m/model_index.json" in str(err.value)
    assert "0" * 64 in str(err.value) and actual in str(err.value)


def test_wrong_tensor_shape_names_file_and_tensor(tiny_models, tmp_path: Path) -> None:
    folder = tmp_path / "weights" / "m"
    save_diffusers_folder(tiny_models["sd1"], folder, "sd1")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    state = {k: v for k, v in tiny_models["sd1"]["vae"].state_dict().items()}
    state["decoder.conv_in.weight"] = torch.zeros(7, 4, 3, 3)
    write_safetensors(weights, state)
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [_vae_entry("m", listed_files(folder))]))
    with pytest.raises(ShapeMismatchError) as err:
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    message = str(err.value)
    assert "vae/diffusion_pytorch_model.safetensors" in message
    assert "'decoder.conv_in.weight'" in message and "[7, 4, 3, 3]" in message


def test_missing_tensor_named(tiny_models, tmp_path: Path) -> None:
    folder = tmp_path / "weights" / "m"
    save_diffusers_folder(tiny_models["sd1"], folder, "sd1")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    state = dict(tiny_models["sd1"]["vae"].state_dict())
    del state["encoder.conv_in.bias"]
    write_safetensors(weights, state)
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [_vae_entry("m", listed_files(folder))]))
    with pytest.raises(CheckpointKeyError, match=r"diffusion_pytorch_model\.safetensors.*encoder\.conv_in\.bias"):
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)


def test_single_file_family_mismatch_named(tiny_models, tmp_path: Path) -> None:
    from tests.pipelines.loading.test_roundtrip import original_checkpoint

    folder = tmp_path / "weights" / "m"
    write_safetensors(folder / "sd.safetensors", original_checkpoint(tiny_models["sd1"], "sd1"))
    (folder / "arch.json").write_text(json.dumps(TINY_ARCHITECTURES["sd1"]))
    entry = {"id": "m", "family": "sdxl", "format": "single_file", "path": "m", "config": "arch.json",
             "files": [{"path": "sd.safetensors", "sha256": None}]}
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [entry]))
    with pytest.raises(Exception, match=r"sd\.safetensors: the manifest says family sdxl.*sd1"):
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)


def test_hash_cache_hit_skips_rehash_and_survives_restart(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "weights"
    (root / "m").mkdir(parents=True)
    target = root / "m" / "w.safetensors"
    target.write_bytes(b"a" * 1000)
    calls: list[Path] = []
    real = safety.sha256_file
    monkeypatch.setattr(safety, "sha256_file", lambda p: calls.append(p) or real(p))
    expected = hashlib.sha256(b"a" * 1000).hexdigest()

    assert verify_sha256(HashCache(root), "m/w.safetensors", expected) == expected
    assert len(calls) == 1
    assert (root / safety.HASH_CACHE_NAME).is_file()
    # a new cache object (a restart) reads the JSON file: no re-hash
    assert verify_sha256(HashCache(root), "m/w.safetensors", expected) == expected
    assert len(calls) == 1

    # same size, new mtime: re-hashed
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert HashCache(root).digest("m/w.safetensors") == expected
    assert len(calls) == 2

    # different content and size: re-hashed, and the mismatch is reported
    target.write_bytes(b"b" * 999)
    with pytest.raises(HashMismatchError, match=r"m/w\.safetensors"):
        verify_sha256(HashCache(root), "m/w.safetensors", expected)
    assert len(calls) == 3


def test_single_file_wrong_config_names_file_and_original_tensor(tiny_models, tmp_path: Path) -> None:
    from tests.pipelines.loading.test_roundtrip import original_checkpoint

    folder = tmp_path / "weights" / "m"
    write_safetensors(folder / "sd.safetensors", original_checkpoint(tiny_models["sd1"], "sd1"))
    arch = json.loads(json.dumps(TINY_ARCHITECTURES["sd1"]))
    arch["unet"]["cross_attention_dim"] = 48  # not what the checkpoint was trained with
    (folder / "arch.json").write_text(json.dumps(arch))
    entry = {"id": "m", "family": "sd1", "format": "single_file", "path": "m", "config": "arch.json",
             "files": [{"path": "sd.safetensors", "sha256": None}]}
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", [entry]))
    with pytest.raises(ShapeMismatchError) as err:
        load_components(manifest.models[0], tmp_path / "weights", CPU, torch.float32)
    message = str(err.value)
    assert "m/sd.safetensors" in message and "model.diffusion_model." in message and "attn2.to_k.weight" in message


def test_missing_variant_names_folder_and_variant(tiny_models, tmp_path: Path) -> None:
    save_diffusers_folder(tiny_models["sd1"], tmp_path / "m", "sd1")
    with pytest.raises(MissingWeightsError, match=r"m/unet: no weights file found; expected the fp16 variant"):
        weight_files(tmp_path, "m/unet", "fp16")


def test_vae_with_deprecated_attention_names_loads(tiny_models, tmp_path: Path) -> None:
    """VAE files saved by old diffusers releases name attention query/key/value/proj_attn."""
    from pipelines.loading.diffusers_folder import load_component

    vae = tiny_models["sd1"]["vae"]
    vae.save_pretrained(tmp_path / "m" / "vae")
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    state = {}
    for key, value in vae.state_dict().items():
        for new, old in renames.items():
            key = key.replace(new, old) if "attentions" in key else key
        state[key] = value
    assert any(".proj_attn." in k for k in state)
    write_safetensors(tmp_path / "m" / "vae" / "diffusion_pytorch_model.safetensors", state)
    loaded, _ = load_component(tmp_path, "m/vae", variant=None, device=CPU, dtype=torch.float32)
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
