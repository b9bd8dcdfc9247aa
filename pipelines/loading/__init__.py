"""Weights from disk: the manifest's files checked (safetensors only, inside the root, sha256),
loaded from diffusers folders or single-file original checkpoints, wrapped into a LoadedModel."""

from pipelines.loading.errors import (
    CheckpointKeyError,
    CorruptCheckpointError,
    HashMismatchError,
    MissingWeightsError,
    PathEscapeError,
    ShapeMismatchError,
    UnsafeFormatError,
    WeightsError,
)
from pipelines.loading.loader import (
    LoadedComponents,
    check_files,
    load_components,
    load_from_manifest,
    load_model,
)

__all__ = [
    "CheckpointKeyError",
    "CorruptCheckpointError",
    "HashMismatchError",
    "LoadedComponents",
    "MissingWeightsError",
    "PathEscapeError",
    "ShapeMismatchError",
    "UnsafeFormatError",
    "WeightsError",
    "check_files",
    "load_components",
    "load_from_manifest",
    "load_model",
]
