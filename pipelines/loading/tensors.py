"""Tensors from safetensors files straight into an empty module, on the target device and dtype.

Modules are built with parameters on the meta device (no host memory), then each parameter is
read from its file, cast, and assigned (`load_state_dict(assign=True)`), so peak host memory
stays near one copy of the component being loaded. Shapes are checked against the header before
any tensor is read, so a wrong architecture fails with the file and tensor named.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from pipelines.loading.errors import CheckpointKeyError, CorruptCheckpointError, ShapeMismatchError
from pipelines.loading.safety import TensorInfo, read_safetensors_header

log = logging.getLogger(__name__)

# safetensors dtype names -> torch dtypes (little-endian, as the format specifies).
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


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
        self._handles: dict[Path, io.BufferedReader] = {}

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

    def get(self, key: str) -> Tensor:
        """One tensor in its stored dtype, read into fresh host memory (no mmap: the process
        holds at most this tensor beyond what it has already loaded)."""
        path, info = self._where[key], self._info[key]
        dtype = SAFETENSORS_DTYPES.get(info.dtype)
        if dtype is None:
            raise CorruptCheckpointError(f"{path}: tensor {key!r} has unsupported dtype {info.dtype}")
        tensor = torch.empty(info.shape, dtype=dtype)
        expected = tensor.numel() * tensor.element_size()
        if expected != info.nbytes:
            raise CorruptCheckpointError(
                f"{path}: tensor {key!r} spans {info.nbytes} bytes, its shape and dtype need {expected}"
            )
        if expected == 0:
            return tensor
        handle = self._handles.get(path)
        try:
            if handle is None:
                handle = self._handles[path] = open(path, "rb")  # noqa: SIM115 - closed in close()
            handle.seek(info.offset)
            view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
            got = handle.readinto(view)
        except OSError as exc:
            raise CorruptCheckpointError(f"{path}: cannot read tensor {key!r}: {exc}") from exc
        if got != expected:
            raise CorruptCheckpointError(f"{path}: truncated while reading tensor {key!r}")
        return tensor

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
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
        tensor = store.get(source.key)  # fresh host memory, stored dtype
        wanted = tensor.dtype
        if tensor.is_floating_point() and expected[name].is_floating_point():
            wanted = torch.float32 if keep_fp32 & set(name.split(".")) else dtype
        if source.transform is not None:
            # a view (fused qkv chunk, transpose): copy so the fused tensor can be freed
            view = source.transform(tensor)
            tensor = torch.empty(view.shape, dtype=wanted).copy_(view)
        state[name] = tensor.to(device=device, dtype=wanted)
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
