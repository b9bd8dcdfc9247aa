"""Load a diffusers-format folder (model_index.json + component subfolders) without any hub.

Each component's architecture comes from its own config.json, its weights from safetensors
files in its subfolder: `<name>.safetensors`, a `.fp16.` variant, or shards listed by a
`<name>.safetensors.index[.fp16].json`. Every file is resolved inside the weights root.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import nn

from pipelines.loading.components import TORCH_COMPONENTS, build_empty
from pipelines.loading.errors import CorruptCheckpointError, MissingWeightsError
from pipelines.loading.safety import refuse_pickle, resolve_inside
from pipelines.loading.tensors import TensorSource, TensorStore, identity_sources, populate

log = logging.getLogger(__name__)

WEIGHT_STEMS = ("diffusion_pytorch_model", "model")  # diffusers, transformers
PICKLE_WEIGHT_NAMES = ("diffusion_pytorch_model.bin", "pytorch_model.bin", "model.ckpt")

# Attention names of VAE checkpoints saved by old diffusers releases -> current names.
_DEPRECATED_ATTENTION_NAMES = {
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_attn": "to_out.0",
}
# transformers CLIP checkpoints on the hub carry this prefix; current classes may not.
_TEXT_MODEL_PREFIX = "text_model."


@dataclass
class FolderModel:
    """The torch components of a diffusers folder, its scheduler config and provenance."""

    components: dict[str, nn.Module]  # "unet"/"transformer", "vae", "text_encoder", ...
    scheduler_config: dict[str, Any]
    pipeline_class: str  # model_index.json's _class_name, e.g. "StableDiffusionPipeline"
    files_read: list[str] = field(default_factory=list)  # relative to the weights root
    # model_index.json "darkroom_text_directions": 2 for a UNet trained on the prompt's encoding
    # followed by its word-reversed one (pipelines.text.ClipTextEncoder); 1 (absent) otherwise
    text_directions: int = 1


def read_json(root: Path, relative: str) -> dict[str, Any]:
    """A JSON file inside the weights root; errors name the file."""
    path = resolve_inside(root, relative)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MissingWeightsError(f"{relative}: file not found under {root}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(f"{relative}: not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CorruptCheckpointError(f"{relative}: expected a JSON object")
    return value


def weight_files(root: Path, component_dir: str, variant: str | None) -> list[str]:
    """The safetensors file(s) of one component folder, relative to root, variant first if asked."""
    folder = resolve_inside(root, component_dir)
    if not folder.is_dir():
        raise MissingWeightsError(f"{component_dir}: folder not found under {root}")
    present = {p.name for p in folder.iterdir()}
    variants = [variant] if variant else [None, "fp16"]
    for var in variants:
        for stem in WEIGHT_STEMS:
            single = f"{stem}.{var}.safetensors" if var else f"{stem}.safetensors"
            index = f"{stem}.safetensors.index.{var}.json" if var else f"{stem}.safetensors.index.json"
            if single in present:
                return [f"{component_dir}/{single}"]
            if index in present:
                return _shards(root, f"{component_dir}/{index}")
    for name in sorted(present):
        if name.endswith((".bin", ".ckpt", ".pt", ".pth")):
            refuse_pickle(f"{component_dir}/{name}")
    wanted = "model[.fp16].safetensors / diffusion_pytorch_model[.fp16].safetensors (or an index)"
    if variant:
        wanted = f"the {variant} variant: *.{variant}.safetensors or *.safetensors.index.{variant}.json"
    raise MissingWeightsError(f"{component_dir}: no weights file found; expected {wanted}")


def _shards(root: Path, index_relative: str) -> list[str]:
    """Shard files named by a safetensors index json (each resolved inside the root)."""
    index = read_json(root, index_relative)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CorruptCheckpointError(f"{index_relative}: no weight_map in the shard index")
    folder = str(PurePosixPath(index_relative).parent)
    shards = []
    for name in sorted(set(weight_map.values())):
        relative = f"{folder}/{name}"
        refuse_pickle(relative)
        path = resolve_inside(root, relative)
        if not path.is_file():
            raise MissingWeightsError(f"{relative}: shard named by {index_relative} not found")
        shards.append(relative)
    return shards


def _checkpoint_key_candidates(name: str) -> list[str]:
    """Names a module key may have in a checkpoint written by older library versions."""
    candidates = [name, _TEXT_MODEL_PREFIX + name]
    if name.startswith(_TEXT_MODEL_PREFIX):
        candidates.append(name[len(_TEXT_MODEL_PREFIX):])
    parts = name.split(".")
    if "attentions" in parts:
        for new, old in ((v, k) for k, v in _DEPRECATED_ATTENTION_NAMES.items()):
            marker = f".{new}."
            if marker in name:
                candidates.append(name.replace(marker, f".{old}.", 1))
    return candidates


def load_component(
    root: Path,
    component_dir: str,
    *,
    variant: str | None,
    device: torch.device,
    dtype: torch.dtype,
    class_name: str | None = None,
) -> tuple[nn.Module, list[str]]:
    """One component folder (config.json + safetensors) -> module on device/dtype, files read."""
    config = read_json(root, f"{component_dir}/config.json")
    name = class_name or config.get("_class_name") or (config.get("architectures") or [None])[0]
    if not isinstance(name, str):
        raise CorruptCheckpointError(f"{component_dir}/config.json: no _class_name / architectures")
    module = build_empty(name, config, where=f"{component_dir}/config.json")
    files = weight_files(root, component_dir, variant)
    store = TensorStore(resolve_inside(root, f) for f in files)
    try:
        sources: dict[str, TensorSource] = identity_sources(module, store, _checkpoint_key_candidates)
        populate(module, store, sources, device=device, dtype=dtype, component=component_dir)
    finally:
        store.close()
    return module, files


def load_diffusers_folder(
    root: Path,
    folder: str,
    *,
    variant: str | None,
    device: torch.device,
    dtype: torch.dtype,
) -> FolderModel:
    """All torch components named by <folder>/model_index.json, plus the scheduler config."""
    index = read_json(root, f"{folder}/model_index.json")
    components: dict[str, nn.Module] = {}
    files: list[str] = [f"{folder}/model_index.json"]
    for name in TORCH_COMPONENTS:
        spec = index.get(name)
        if not (isinstance(spec, list) and len(spec) == 2 and spec[1]):
            continue
        module, read = load_component(
            root, f"{folder}/{name}", variant=variant, device=device, dtype=dtype, class_name=spec[1]
        )
        components[name] = module
        files.extend([f"{folder}/{name}/config.json", *read])
    if not components:
        raise CorruptCheckpointError(f"{folder}/model_index.json names no model components")
    scheduler_config: dict[str, Any] = {}
    if isinstance(index.get("scheduler"), list):
        scheduler_config = read_json(root, f"{folder}/scheduler/scheduler_config.json")
        files.append(f"{folder}/scheduler/scheduler_config.json")
    pipeline_class = str(index.get("_class_name", ""))
    directions = index.get("darkroom_text_directions", 1)
    if directions not in (1, 2):
        raise CorruptCheckpointError(f"{folder}/model_index.json: darkroom_text_directions must be 1 or 2, got {directions!r}")
    return FolderModel(components, scheduler_config, pipeline_class, files, text_directions=int(directions))
