"""Two-direction text conditioning (the caption's encoding, then its word-reversed one): the training
side (training.text_unet) and the served side (pipelines.text.ClipTextEncoder via model_index.json)
compute the same context, exports carry the choice, and the students never inherit it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines.loading.diffusers_folder import load_diffusers_folder
from pipelines.models import assemble
from pipelines.text import reverse_words
from training.checkpoint import StageState, save_state, save_weights
from training.data import CONTEXT_LENGTH, tokenize
from training.models import build_unet, build_vae
from training.text_unet import TextUNet, caption_tokens

CAPTIONS = ["a large red circle left of a small blue square", "a green triangle, a blue ring and a red circle", ""]


def test_reverse_words_reverses_words_and_splits_commas() -> None:
    assert reverse_words("a red circle, a blue square") == "square blue a , circle red a"
    assert reverse_words("  a  b ") == "b a" and reverse_words("") == ""
    assert reverse_words(reverse_words(CAPTIONS[0])) == CAPTIONS[0]


def test_context_is_both_encodings_side_by_side() -> None:
    torch.manual_seed(0)
    model = TextUNet(text_directions=2).eval()
    tokens = caption_tokens(CAPTIONS, 2)
    assert tokens.shape == (3, 2 * CONTEXT_LENGTH)
    assert torch.equal(tokens[:, CONTEXT_LENGTH:], tokenize([reverse_words(c) for c in CAPTIONS]))
    with torch.no_grad():
        context = model.context(tokens)
        forward = model.text_encoder(tokenize(CAPTIONS)).last_hidden_state
        backward = model.text_encoder(tokenize([reverse_words(c) for c in CAPTIONS])).last_hidden_state
    assert torch.allclose(context, torch.cat((forward, backward), dim=1), atol=1e-6)
    with pytest.raises(ValueError, match="154 token ids"):
        model.context(tokenize(CAPTIONS))  # one direction's ids for a two-direction model
    one = TextUNet(text_directions=1).eval()
    with torch.no_grad():
        assert one.context(caption_tokens(CAPTIONS)).shape == (3, CONTEXT_LENGTH, 128)


def _run(tmp_path: Path, directions: int) -> tuple[Path, TextUNet]:
    """A run directory with a random teacher trained (nominally) with `directions`, a VAE and an LCM student."""
    torch.manual_seed(1)
    run = tmp_path / "run"
    model = TextUNet(directions)
    save_weights(model, run / "text_unet" / "ema_text_unet.safetensors")
    save_state(run / "text_unet", StageState(metrics={"scaling_factor": 0.25, "text_directions": directions}), "test")
    save_weights(build_vae(), run / "autoencoder" / "vae.safetensors")
    save_weights(build_unet(), run / "lcm" / "ema_student.safetensors")
    return run, model


def test_export_serves_the_training_context_and_students_stay_one_direction(tmp_path: Path) -> None:
    from training.export import export, export_student, import_weights

    run, model = _run(tmp_path, 2)
    weights = tmp_path / "weights"
    export(run, weights)
    assert json.loads((weights / "bundled" / "model_index.json").read_text())["darkroom_text_directions"] == 2
    folder = load_diffusers_folder(weights, "bundled", variant=None, device=torch.device("cpu"), dtype=torch.float32)
    assert folder.text_directions == 2
    served = assemble("bundled", folder.components, folder.scheduler_config, model_id="bundled", device="cpu",
                      dtype=torch.float32, text_directions=folder.text_directions)
    assert served.text_encoder.both_directions  # type: ignore[union-attr]
    conditioning, _ = served.text_encoder.encode(CAPTIONS)  # type: ignore[union-attr]
    with torch.no_grad():
        trained = model.eval().context(caption_tokens(CAPTIONS, 2))
    assert conditioning.text_embeddings is not None and conditioning.text_embeddings.shape == trained.shape
    assert torch.allclose(conditioning.text_embeddings, trained, atol=2e-2)  # the export is fp16

    from pipelines.loading import load_from_manifest
    from tests.pipelines.loading.tiny_checkpoints import listed_files, write_manifest

    manifest = write_manifest(tmp_path / "manifest.yaml", [{"id": "bundled", "family": "bundled", "format": "diffusers",
                                                           "path": "bundled", "files": listed_files(weights / "bundled")}])
    through_manifest = load_from_manifest("bundled", manifest, weights, device="cpu", dtype=torch.float32)
    assert through_manifest.text_encoder.both_directions  # type: ignore[union-attr]

    export_student(run, weights, "lcm")
    assert "darkroom_text_directions" not in json.loads((weights / "bundled_lcm" / "model_index.json").read_text())
    again = tmp_path / "again"
    import_weights(weights, again)
    assert json.loads((again / "text_unet" / "state.json").read_text())["metrics"]["text_directions"] == 2


def test_one_direction_export_has_no_key_and_bad_values_are_refused(tmp_path: Path) -> None:
    from pipelines.loading.errors import CorruptCheckpointError
    from training.export import export

    run, _ = _run(tmp_path, 1)
    weights = tmp_path / "weights"
    export(run, weights)
    index_path = weights / "bundled" / "model_index.json"
    index = json.loads(index_path.read_text())
    assert "darkroom_text_directions" not in index
    assert load_diffusers_folder(weights, "bundled", variant=None, device=torch.device("cpu"), dtype=torch.float32).text_directions == 1
    index_path.write_text(json.dumps({**index, "darkroom_text_directions": 3}))
    with pytest.raises(CorruptCheckpointError, match="darkroom_text_directions"):
        load_diffusers_folder(weights, "bundled", variant=None, device=torch.device("cpu"), dtype=torch.float32)
    folder_components: dict[str, object] = {}
    with pytest.raises(ValueError, match="text_directions"):
        assemble("sdxl", folder_components, {}, model_id="x", device="cpu", dtype=torch.float32, text_directions=2)


def test_distillation_stages_refuse_a_two_direction_teacher(tmp_path: Path) -> None:
    """They encode captions with the teacher's text encoder directly (one direction): refused, not fed wrongly."""
    from training.text_unet import load_frozen_teacher

    run, _ = _run(tmp_path, 2)
    with pytest.raises(ValueError, match="text_directions 2"):
        load_frozen_teacher(run, torch.device("cpu"))
    assert load_frozen_teacher(run, torch.device("cpu"), text_directions=(1, 2)).text_directions == 2
