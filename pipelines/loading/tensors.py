"""Tensors from safetensors files straight into an empty module, on the target device and dtype.

Modules are built with parameters on the meta device (no host memory), then each parameter is
read from its file, cast, and assigned (`load_state_dict(assign=True)`), so peak host memory
stays near one copy of the component being loaded. Shapes are checked against the header before
any tensor is read, so a wrong architecture fails with the file and tensor named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from pipelines.loading.errors import CheckpointKeyError, CorruptCheckpointError, ShapeMismatchError
from pipelines.loading.safety import TensorInfo, read_safetensors_header

log = logging.getLogger(__name__)


class TensorStore:
    """The tensors of one or more safetensors files (shards), read one at a time on demand."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = list(files)
        self._where: dict[str, Path] = {}
        self._info: dict[str, TensorInfo] = {}
        for path in self.files:
            for key, info in read_safetensors_header(path).items():
                if key in self._where:
                    raise CorruptCheckpointError(
                        f"{path}: tensor {key!r} also appears in {self._where[key]}"
                    )
                self._where[key] = path
                self._info[key] = info
        self._handles: dict[Path, Any] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._info[key].shape

    def file_of(self, key: str) -> Path:
        return self._where[key]

    def describe(self) -> str:
        """The file name(s), for error messages."""
        return ", ".join(str(p) for p in self.files)

    def get(self, key: str, device: torch.device) -> Tensor:
        """One tensor in its stored dtype, read onto `device`."""
        path = self._where[key]
        handle = self._handles.get(path)
        try:
            if handle is None:
                target = "cpu" if device.type == "meta" else str(device)
                handle = safe_open(str(path), framework="pt", device=target)
                self._handles[path] = handle
            return handle.get_tensor(key)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CorruptCheckpointError(f"{path}: cannot read tensor {key!r}: {exc}") from exc

    def close(self) -> None:
        self._handles.clear()


@dataclass(frozen=True)
class TensorSource:
    """Where one parameter of the module comes from: a checkpoint key and an optional transform."""

    key: str  # key in the TensorStore
    shape: tuple[int, ...]  # the shape the parameter will have after `transform`
    transform: Callable[[Tensor], Tensor] | None = None  # e.g. (C, C, 1, 1) conv -> (C, C) linear


def populate(
    module: nn.Module,
    store: TensorStore,
    sources: dict[str, TensorSource],
    *,
    device: torch.device,
    dtype: torch.dtype,
    component: str,
) -> nn.Module:
    """Fill an empty (meta) module from `store` via `sources` (module key -> where it comes from)."""
    expected = module.state_dict(keep_vars=True)
    tied = _tied_keys(module)
    missing = [
        k for k, v in expected.items() if k not in sources and k not in tied and v.device.type == "meta"
    ]
    if missing:
        shown = ", ".join(missing[:8]) + (f" ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise CheckpointKeyError(
            f"{store.describe()}: {component} needs tensors the checkpoint lacks: {shown}"
        )
    for name, source in sources.items():
        if name not in expected:
            raise CheckpointKeyError(f"{store.describe()}: {component} has no parameter {name!r}")
        want = tuple(expected[name].shape)
        if source.shape != want:
            raise ShapeMismatchError(
                f"{store.file_of(source.key)}: tensor {source.key!r} has shape "
                f"{list(store.shape(source.key))}, but {component}.{name} needs {list(want)} "
                "(wrong architecture config for this checkpoint?)"
            )
    keep_fp32 = _keep_in_fp32(module)
    state: dict[str, Tensor] = {}
    for name, source in sources.items():
        tensor = store.get(source.key, device)
        if source.transform is not None:
            tensor = source.transform(tensor)
        wanted = tensor.dtype
        if tensor.is_floating_point() and expected[name].is_floating_point():
            wanted = torch.float32 if keep_fp32 & set(name.split(".")) else dtype
        # Always a fresh, aligned, contiguous copy: never a view of the file's mapping (which
        # could change after its hash was checked) nor of a fused tensor (fused qkv chunks).
        fresh = torch.empty(tensor.shape, dtype=wanted, device=tensor.device)
        state[name] = fresh.copy_(tensor)
    for target, origin in tied.items():
        if target not in state and origin in state:
            state[target] = state[origin]
    module.load_state_dict(state, strict=False, assign=True)
    # Buffers the module computed itself (position ids, sin-cos tables) follow the parameters.
    # nn.Module.to, not the libraries' overrides, which would recast the kept-fp32 parameters.
    nn.Module.to(module, device=device)
    for owner in module.modules():
        for buffer_name, buffer in list(owner.named_buffers(recurse=False)):
            if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                setattr(owner, buffer_name, buffer.to(dtype=dtype))
    leftover = [n for n, t in module.state_dict(keep_vars=True).items() if t.device.type == "meta"]
    if leftover:
        raise CheckpointKeyError(f"{store.describe()}: {component} left unfilled: {leftover[:8]}")
    return module.eval().requires_grad_(False)


def _keep_in_fp32(module: nn.Module) -> set[str]:
    """Submodule names the library keeps in fp32 whatever the dtype (T5's `wo` overflows fp16)."""
    names = getattr(module, "_keep_in_fp32_modules", None) or []
    return {str(n) for n in names}


def _tied_keys(module: nn.Module) -> dict[str, str]:
    """Parameter keys tied to another (transformers' `_tied_weights_keys`): target -> origin."""
    tied = getattr(module, "_tied_weights_keys", None)
    if isinstance(tied, dict):
        return {str(k): str(v) for k, v in tied.items()}
    return {}


def identity_sources(
    module: nn.Module, store: TensorStore, renames: Callable[[str], list[str]] | None = None
) -> dict[str, TensorSource]:
    """Module key -> same-named checkpoint key (first hit among `renames(key)` candidates)."""
    sources: dict[str, TensorSource] = {}
    for name, value in module.state_dict(keep_vars=True).items():
        candidates = renames(name) if renames is not None else [name]
        for candidate in candidates:
            if candidate in store:
                sources[name] = TensorSource(candidate, store.shape(candidate))
                break
        else:
            if value.device.type != "meta":  # a buffer the module computes itself
                continue
    return sources
