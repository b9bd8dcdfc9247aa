"""The repository's weights manifest validates; every bad field is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.manifest import (
    DEFAULT_MANIFEST_PATH,
    ManifestError,
    default_weights_root,
    load_manifest,
)

REPO_WEIGHTS = DEFAULT_MANIFEST_PATH.parent / "weights"


def test_repository_manifest_lists_the_served_models() -> None:
    manifest = load_manifest()
    ids = {e.id for e in manifest.models}
    assert {"bundled", "sd15", "sd21-base", "sd-turbo", "sdxl-base", "sdxl-turbo",
            "lcm-dreamshaper-v7", "sd15-canny", "dit-xl-2-256", "pixart-alpha-512"} <= ids
    assert manifest.default_model == "bundled"
    assert manifest.get().family == "bundled"
    sd15 = manifest.get("sd15")
    assert sd15.format == "single_file" and sd15.checkpoint.path == "v1-5-pruned-emaonly.safetensors"
    assert sd15.controlnets == ["sd15-canny"] and manifest.get("sd15-canny").kind == "controlnet"
    assert manifest.get("sdxl-base").checkpoint.path == "sd_xl_base_1.0.safetensors"
    assert manifest.get("sd-turbo").defaults.steps == 1
    for entry in manifest.models:
        for f in entry.files:
            assert not f.path.endswith((".bin", ".ckpt", ".pt", ".pth")), (entry.id, f.path)
            if f.source is None:  # Darkroom's own weights, committed: no source, but a hash
                assert entry.family == "bundled" and f.sha256 is not None, (entry.id, f.path)
                if entry.id == manifest.default_model:  # the default model ships on main
                    assert (REPO_WEIGHTS / entry.path / f.path).is_file(), (entry.id, f.path)
            else:
                assert f.source.startswith(("hf://", "https://")), (entry.id, f.path)
    # hashes left to pull / verify --update are null, and the file says how to fill them
    assert "verify" in DEFAULT_MANIFEST_PATH.read_text() and "--update" in DEFAULT_MANIFEST_PATH.read_text()


def _base() -> dict:
    return {
        "default_model": "a",
        "models": [
            {"id": "a", "family": "sd1", "format": "single_file", "path": "a",
             "files": [{"path": "a.safetensors", "sha256": None, "source": "hf://org/repo/a.safetensors"}]},
            {"id": "c", "family": "sd1", "kind": "controlnet", "format": "diffusers", "path": "c"},
        ],
    }


def _load(tmp_path: Path, data: dict):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_manifest(path)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["models"][0].update(family="sd3"), r"models\[a\]\.family"),
        (lambda d: d["models"][0]["files"][0].update(sha256="abc"), r"models\[a\]\.files\[a\.safetensors\]\.sha256"),
        (lambda d: d["models"][0]["files"][0].update(path="../x.safetensors"), r"files\[.*\]\.path.*'\.\.'"),
        (lambda d: d["models"][0].update(path="/abs"), r"models\[a\]\.path.*absolute"),
        (lambda d: d["models"][0]["files"][0].update(source="ftp://x/y"), r"files\[a\.safetensors\]\.source"),
        (lambda d: d["models"][0].update(dtype="float8"), r"models\[a\]\.dtype"),
        (lambda d: d["models"][0].update(defaults={"steps": 0}), r"models\[a\]\.defaults\.steps"),
        (lambda d: d["models"][0].update(limits={"max_side": 256}), r"defaults\.width 512 is outside limits"),
        (lambda d: d["models"][0].update(colour="red"), r"models\[a\]\.colour.*Extra inputs"),
        (lambda d: d.update(default_model="zzz"), r"default_model 'zzz'"),
        (lambda d: d["models"][0].update(controlnets=["nope"]), r"controlnets: 'nope'"),
        (lambda d: d["models"][0]["files"].append({"path": "b.safetensors"}), r"exactly one \.safetensors"),
        (lambda d: d["models"][1].update(id="a"), r"id 'a' appears twice"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, mutate, expected: str) -> None:
    data = _base()
    assert _load(tmp_path, data).get("a").family == "sd1"
    mutate(data)
    with pytest.raises(ManifestError, match=expected) as err:
        _load(tmp_path, data)
    assert str(tmp_path / "manifest.yaml") in str(err.value)


def test_unknown_model_id_lists_known(tmp_path: Path) -> None:
    manifest = _load(tmp_path, _base())
    with pytest.raises(KeyError, match=r"unknown model 'x'.*a, c"):
        manifest.get("x")


def test_unreadable_manifest_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"missing\.yaml"):
        load_manifest(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ManifestError, match=r"bad\.yaml: not valid YAML"):
        load_manifest(bad)


def test_default_weights_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DARKROOM_WEIGHTS_ROOT", raising=False)
    assert default_weights_root() == Path("weights")
    monkeypatch.setenv("DARKROOM_WEIGHTS_ROOT", str(tmp_path))
    assert default_weights_root() == tmp_path
