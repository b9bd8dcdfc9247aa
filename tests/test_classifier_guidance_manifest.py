"""Classifier guidance, registration and labels: the manifest's classifier entries (each refusal
names its field), the shipped bundled-classifier entry, and prompt -> labels with the
shapes-world caption grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipelines.manifest import Manifest, ManifestError, load_manifest
from server.classifier import load_classifier, shapes_world_labels
from training.data import sample_scenes

ROOT = Path(__file__).resolve().parents[1]
HAVE_CLASSIFIER = (ROOT / "weights" / "bundled_classifier" / "classifier.safetensors").exists()


def _manifest(pipeline: dict[str, Any], classifier: dict[str, Any]) -> dict[str, Any]:
    base = {"id": "m", "family": "bundled", "format": "diffusers", "path": "m"}
    head = {"id": "c", "family": "bundled", "kind": "classifier", "format": "single_file", "path": "c",
            "labels": "shapes_world_pairs", "files": [{"path": "c.safetensors"}]}
    return {"default_model": "m", "models": [{**base, **pipeline}, {**head, **classifier}]}


def _error(data: dict[str, Any], tmp_path: Path) -> str:
    import yaml

    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return str(info.value)


def test_a_pipeline_attaches_a_classifier_entry_by_id() -> None:
    manifest = Manifest.model_validate(_manifest({"classifier": "c"}, {}))
    assert manifest.get("m").classifier == "c"
    assert manifest.get("c").labels == "shapes_world_pairs"
    assert [e.id for e in manifest.pipelines()] == ["m"]


@pytest.mark.parametrize(
    ("pipeline", "classifier", "field", "words"),
    [
        ({"classifier": "m2"}, {}, "models[m].classifier", "not a classifier entry"),
        ({"classifier": "c"}, {"family": "sd1"}, "models[m].classifier", "family sd1"),
        ({}, {"labels": None}, "models[c]", "labels"),
        ({}, {"format": "diffusers"}, "models[c]", "format"),
        ({"labels": "shapes_world_pairs"}, {}, "models[m]", "only classifier entries have labels"),
        ({}, {"classifier": "c"}, "models[c]", "only a pipeline entry attaches a classifier"),
        ({}, {"labels": "imagenet"}, "models[c].labels", "shapes_world_pairs"),
    ],
)
def test_classifier_fields_are_checked_and_errors_name_them(
    tmp_path: Path, pipeline: dict[str, Any], classifier: dict[str, Any], field: str, words: str
) -> None:
    message = _error(_manifest(pipeline, classifier), tmp_path)
    assert field in message and words in message, message


def test_the_shipped_manifest_attaches_bundled_classifier_with_hashes() -> None:
    manifest = load_manifest(ROOT / "weights_manifest.yaml")
    entry = manifest.get(manifest.get("bundled").classifier)
    assert entry.id == "bundled-classifier" and entry.kind == "classifier"
    assert entry.labels == "shapes_world_pairs" and entry.checkpoint.path == "classifier.safetensors"
    assert all(f.sha256 is not None for f in entry.files)


@pytest.mark.skipif(not HAVE_CLASSIFIER, reason="weights/bundled_classifier not present")
def test_the_shipped_classifier_loads_checked_and_answers_48_heads() -> None:
    manifest = load_manifest(ROOT / "weights_manifest.yaml")
    served = load_classifier(manifest.get("bundled-classifier"), ROOT / "weights", torch.device("cpu"))
    logits = served.network(torch.zeros(2, 4, 16, 16), torch.tensor([1.0, 5.0]))
    assert served.heads == 48 and len(logits) == 48 and tuple(logits[0].shape) == (2, 2)


def test_a_tampered_classifier_file_is_refused(tmp_path: Path) -> None:
    from pipelines.loading.errors import HashMismatchError

    manifest = Manifest.model_validate(
        _manifest({}, {"files": [{"path": "c.safetensors", "sha256": "0" * 64}]})
    )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "c.safetensors").write_bytes(b"not the file")
    with pytest.raises(HashMismatchError):
        load_classifier(manifest.get("c"), tmp_path, torch.device("cpu"))


def test_every_grammar_caption_gets_its_mentioned_pairs() -> None:
    from training.data import caption_presence

    scenes = sample_scenes(5, 300, "train") + sample_scenes(5, 300, "heldout")
    for scene in scenes:
        assert shapes_world_labels(scene.caption.text) == tuple(caption_presence(scene.caption)), scene.caption.text


def test_labels_of_a_hand_written_caption() -> None:
    labels = shapes_world_labels("A small red circle left of a blue square.")
    # head = shape * 8 + colour (training.data.SHAPES x COLOURS): circle red = 0, square blue = 12
    assert [i for i, v in enumerate(labels) if v] == [0, 12] and len(labels) == 48


@pytest.mark.parametrize(
    ("prompt", "why"),
    [
        ("a photo of a dog", "outside the shapes-world caption grammar"),
        ("a red circle on a table", "outside the shapes-world caption grammar"),
        ("a circle", "needs a colour"),
        ("a red", "must be followed by a shape"),
        ("a small circle", "must be followed by a colour"),
        ("", "names 0"),
        ("a red circle, a blue square, a green ring and a white cross", "names 4"),
    ],
)
def test_prompts_outside_the_grammar_are_refused_with_a_reason(prompt: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        shapes_world_labels(prompt)
