"""Errors raised while finding, checking and loading weights. Each message names the file."""

from __future__ import annotations


class WeightsError(Exception):
    """Base class: something about a weights file prevents loading it."""


class UnsafeFormatError(WeightsError):
    """A pickle-based checkpoint (.ckpt/.bin/.pt/.pth): loading it could run arbitrary code."""


class PathEscapeError(WeightsError):
    """A path that would leave the weights root (.., absolute path, symlink out)."""


class MissingWeightsError(WeightsError):
    """A file the model needs is not on disk."""


class HashMismatchError(WeightsError):
    """A file's sha256 differs from the manifest's."""


class CorruptCheckpointError(WeightsError):
    """A safetensors file that is truncated or whose header cannot be parsed."""


class ShapeMismatchError(WeightsError):
    """A tensor whose shape differs from the architecture's parameter."""


class CheckpointKeyError(WeightsError):
    """Tensors the architecture needs are absent from the checkpoint (or unexpected ones present)."""
