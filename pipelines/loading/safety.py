"""Safe access to weight files: only safetensors, only inside the weights root, hashes checked.

- Pickle formats are refused: unpickling a checkpoint can execute arbitrary code.
- Every path is resolved against the weights root and must stay inside it after symlinks are
  followed (no `..`, no absolute paths, no symlink pointing out).
- sha256 digests are cached in `<root>/.darkroom-hashes.json`, keyed by the file's relative path
  and validated by (size, mtime_ns), so a restart does not re-read gigabytes.
- A safetensors header is parsed before use, so a truncated file is reported by name instead of
  failing somewhere inside a tensor copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelines.loading.errors import (
    CorruptCheckpointError,
    HashMismatchError,
    MissingWeightsError,
    PathEscapeError,
    UnsafeFormatError,
)
from pipelines.manifest import PICKLE_SUFFIXES

log = logging.getLogger(__name__)

HASH_CACHE_NAME = ".darkroom-hashes.json"
HASH_CHUNK_BYTES = 8 << 20
SAFETENSORS_MAX_HEADER_BYTES = 100 << 20  # the format's own limit on the JSON header


def refuse_pickle(path: str | os.PathLike[str]) -> None:
    """Raise UnsafeFormatError for pickle-based checkpoints, saying how to convert them."""
    name = os.fspath(path)
    lowered = name.lower()
    if lowered.endswith(PICKLE_SUFFIXES):
        raise UnsafeFormatError(
            f"{name}: refusing to load a pickle-based checkpoint ({Path(name).suffix}); "
            "unpickling can run arbitrary code. Convert it once, in a trusted sandbox, to "
            "safetensors, e.g. `python -c \"import torch, safetensors.torch as st; "
            "sd = torch.load('IN', map_location='cpu', weights_only=True); "
            "st.save_file({k: v.contiguous() for k, v in sd.get('state_dict', sd).items()}, "
            "'OUT.safetensors')\"`, or download the .safetensors release of the model."
        )


def resolve_inside(root: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """The absolute path of `relative` under `root`; PathEscapeError if it would leave root."""
    rel = os.fspath(relative)
    root_path = Path(root)
    if os.path.isabs(rel) or PurePosixPath(rel).is_absolute() or rel.startswith("~"):
        raise PathEscapeError(f"{rel}: absolute paths are not allowed; paths are relative to {root}")
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if ".." in parts:
        raise PathEscapeError(f"{rel}: '..' is not allowed in weight paths (root {root})")
    candidate = root_path / rel
    real_root = root_path.resolve()
    real = candidate.resolve()  # follows symlinks, also those of missing tails' parents
    if real != real_root and real_root not in real.parents:
        raise PathEscapeError(
            f"{rel}: resolves to {real}, outside the weights root {real_root} (symlink out?)"
        )
    return candidate


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _CachedHash:
    size: int
    mtime_ns: int
    sha256: str


class HashCache:
    """sha256 per file under a weights root, reused while (size, mtime_ns) are unchanged."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / HASH_CACHE_NAME
        self._entries: dict[str, _CachedHash] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            for key, value in raw.get("files", {}).items():
                self._entries[key] = _CachedHash(
                    int(value["size"]), int(value["mtime_ns"]), str(value["sha256"])
                )
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable hash cache %s: %s", self.path, exc)

    def digest(self, relative: str) -> str:
        """The sha256 of root/relative: from the cache when size and mtime match, else computed."""
        path = resolve_inside(self.root, relative)
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise MissingWeightsError(f"{relative}: file not found under {self.root}") from exc
        key = PurePosixPath(relative).as_posix()
        cached = self._entries.get(key)
        if cached is not None and cached.size == stat.st_size and cached.mtime_ns == stat.st_mtime_ns:
            return cached.sha256
        value = sha256_file(path)
        self._entries[key] = _CachedHash(stat.st_size, stat.st_mtime_ns, value)
        self._save()
        return value

    def forget(self, relative: str) -> None:
        """Drop a file's cached digest (after it is replaced or deleted)."""
        if self._entries.pop(PurePosixPath(relative).as_posix(), None) is not None:
            self._save()

    def _save(self) -> None:
        payload = {
            "version": 1,
            "files": {
                k: {"size": v.size, "mtime_ns": v.mtime_ns, "sha256": v.sha256}
                for k, v in sorted(self._entries.items())
            },
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only weights volume: hashing still works, just not cached
            log.warning("cannot write hash cache %s: %s", self.path, exc)


def verify_sha256(cache: HashCache, relative: str, expected: str | None) -> str:
    """Check root/relative against `expected` (None: only computed); returns the actual digest."""
    actual = cache.digest(relative)
    if expected is not None and actual != expected.lower():
        raise HashMismatchError(
            f"{relative}: sha256 mismatch: expected {expected.lower()}, actual {actual} "
            f"(file under {cache.root}; re-download it with `darkroom weights pull`)"
        )
    return actual


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header."""

    dtype: str  # safetensors dtype name: "F32", "F16", "BF16", ...
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the tensor's data in the file
    nbytes: int


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and sanity-check a safetensors header; CorruptCheckpointError names the file."""
    refuse_pickle(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise CorruptCheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > SAFETENSORS_MAX_HEADER_BYTES or 8 + header_len > size:
                raise CorruptCheckpointError(
                    f"{path}: truncated or corrupt safetensors file: header claims "
                    f"{header_len} bytes, file has {size}"
                )
            header_bytes = fh.read(header_len)
    except FileNotFoundError as exc:
        raise MissingWeightsError(f"{path}: file not found") from exc
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(f"{path}: corrupt safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    tensors: dict[str, TensorInfo] = {}
    data_end = 0
    for key, value in header.items():
        if key == "__metadata__":
            continue
        try:
            start, end = (int(v) for v in value["data_offsets"])
            shape = tuple(int(d) for d in value["shape"])
            if not 0 <= start <= end:
                raise ValueError(f"data_offsets {start}, {end}")
            tensors[key] = TensorInfo(str(value["dtype"]), shape, 8 + header_len + start, end - start)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptCheckpointError(f"{path}: corrupt header entry for tensor {key!r}") from exc
        data_end = max(data_end, end)
    expected_size = 8 + header_len + data_end
    if size < expected_size:
        raise CorruptCheckpointError(
            f"{path}: truncated safetensors file: {size} bytes, header needs {expected_size}"
        )
    return tensors
