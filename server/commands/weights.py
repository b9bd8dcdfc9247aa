"""`darkroom weights list | verify [ID] [--update] | pull ID`: what is on disk, is it right, get it.

pull downloads each listed file into `<file>.part` beside its target, resuming with HTTP Range
requests after a cut connection, and renames it into place only once its sha256 matches the
manifest; a wrong hash deletes the part file, so nothing half-written is left in the weights
root. A file whose manifest sha256 is null is accepted on first download and its hash recorded
in the manifest (trust on first use, said on stderr). `hf://org/repo/path` sources resolve to the
hub's download URL through huggingface_hub when it is importable (its auth token included).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipelines.loading.errors import WeightsError
from pipelines.loading.safety import (
    HashCache,
    read_safetensors_header,
    refuse_pickle,
    resolve_inside,
    sha256_file,
)
from pipelines.manifest import (
    DEFAULT_MANIFEST_PATH,
    Manifest,
    ManifestError,
    ModelEntry,
    default_weights_root,
    load_manifest,
)

CHUNK_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 5  # per file: the first try plus resumed retries after a cut connection
RETRY_WAIT_S = 1.0
HF_ENDPOINT = "https://huggingface.co"


def main(args: argparse.Namespace) -> int:
    """Dispatch `darkroom weights <list|verify|pull>`; returns the process exit code."""
    manifest_path = Path(args.manifest) if args.manifest else DEFAULT_MANIFEST_PATH
    root = Path(args.root) if args.root else default_weights_root()
    try:
        manifest = load_manifest(manifest_path)
        if args.weights_command == "list":
            return list_models(manifest, root)
        if args.weights_command == "verify":
            return verify(manifest, manifest_path, root, args.model_id, getattr(args, "update", False))
        if args.weights_command == "pull":
            return pull(manifest, manifest_path, root, args.model_id)
    except (ManifestError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    raise ValueError(f"unknown weights command {args.weights_command!r}")


# --------------------------------------------------------------------------------------------
# list


def _status(entry: ModelEntry, root: Path) -> str:
    try:
        folder = resolve_inside(root, entry.path)
    except WeightsError as exc:
        return f"error: {exc}"
    if not folder.exists():
        return "absent"
    if not entry.files:
        return "present (no files listed)"
    missing = [f.path for f in entry.files if not (folder / f.path).is_file()]
    unknown = sum(f.sha256 is None for f in entry.files)
    if missing:
        return f"incomplete: {len(missing)} of {len(entry.files)} files missing"
    return "present" + (f" ({unknown} without sha256)" if unknown else "")


def list_models(manifest: Manifest, root: Path) -> int:
    """One line per model: id, family, kind, format, whether its files are on disk."""
    print(f"weights root: {root}")
    rows = [("id", "family", "kind", "format", "status")]
    for entry in manifest.models:
        default = " (default)" if entry.id == manifest.default_model else ""
        rows.append((entry.id + default, entry.family, entry.kind, entry.format, _status(entry, root)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    return 0


# --------------------------------------------------------------------------------------------
# verify


def verify(
    manifest: Manifest, manifest_path: Path, root: Path, model_id: str | None, update: bool
) -> int:
    """Check every listed file (one model, or all present ones); non-zero exit naming bad files."""
    entries = [manifest.get(model_id)] if model_id else manifest.models
    cache = HashCache(root)
    bad: list[str] = []
    for entry in entries:
        try:
            folder_present = resolve_inside(root, entry.path).exists()
        except WeightsError as exc:
            bad.append(str(exc))
            continue
        if not folder_present and model_id is None:
            print(f"{entry.id}: not downloaded (skipped)")
            continue
        if not entry.files:
            if update and folder_present:
                bad.extend(_list_folder(manifest_path, root, entry, cache))
            else:
                print(f"{entry.id}: no files listed (--update lists and records what is in {entry.path}/)")
            continue
        recorded: dict[str, str] = {}
        for listed in entry.files:
            relative = f"{entry.path}/{listed.path}"
            try:
                refuse_pickle(relative)
                path = resolve_inside(root, relative)
                if not path.is_file():
                    bad.append(f"{relative}: missing")
                    continue
                if listed.size is not None and path.stat().st_size != listed.size:
                    bad.append(f"{relative}: size {path.stat().st_size}, manifest says {listed.size}")
                    continue
                if path.suffix == ".safetensors":
                    read_safetensors_header(path)
                actual = cache.digest(relative)
            except WeightsError as exc:
                bad.append(str(exc))
                continue
            if listed.sha256 is None:
                if update:
                    recorded[listed.path] = actual
                    print(f"{relative}: sha256 {actual} (recorded)")
                else:
                    print(f"{relative}: sha256 unknown in manifest, actual {actual} (--update records it)")
            elif listed.sha256 != actual:
                bad.append(f"{relative}: sha256 mismatch: expected {listed.sha256}, actual {actual}")
            else:
                print(f"{relative}: ok")
        if recorded:
            record_hashes(manifest_path, entry.id, recorded)
    for problem in bad:
        print(f"BAD {problem}", file=sys.stderr)
    return 1 if bad else 0


def _list_folder(manifest_path: Path, root: Path, entry: ModelEntry, cache: HashCache) -> list[str]:
    """Record every file under an entry's folder (with sha256) into its empty `files` list."""
    folder = resolve_inside(root, entry.path)
    problems: list[str] = []
    hashes: dict[str, str] = {}
    # os.walk follows symlinked component folders (a student sharing its teacher's VAE);
    # resolve_inside below still refuses any that point out of the root
    found = sorted(
        Path(directory) / name
        for directory, _, names in os.walk(folder, followlinks=True)
        for name in names
    )
    for path in found:
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or name.endswith(".part") or any(p.startswith(".") for p in name.split("/")):
            continue
        relative = f"{entry.path}/{name}"
        try:
            refuse_pickle(relative)
            resolve_inside(root, relative)  # a symlink out of the root is refused, not recorded
            if path.suffix == ".safetensors":
                read_safetensors_header(path)
            hashes[name] = cache.digest(relative)
        except WeightsError as exc:
            problems.append(str(exc))
    if problems:
        return problems  # record nothing from a folder with bad files
    _record_file_list(manifest_path, entry.id, hashes)
    for name, digest in hashes.items():
        print(f"{entry.path}/{name}: sha256 {digest} (listed)")
    return []


def _entry_lines(lines: list[str], manifest_path: Path, model_id: str) -> tuple[int, int]:
    """[start, end) line range of a model's entry in the manifest text."""
    start = next(
        (i for i, line in enumerate(lines)
         if re.match(rf"\s*-\s*id:\s*['\"]?{re.escape(model_id)}['\"]?\s*(#.*)?$", line)),
        None,
    )
    if start is None:
        raise ManifestError(f"{manifest_path}: cannot find the entry of model {model_id!r} to update")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = next(
        (i for i in range(start + 1, len(lines))
         if re.match(r"\s*-\s*id:", lines[i]) and len(lines[i]) - len(lines[i].lstrip()) == indent),
        len(lines),
    )
    return start, end


def _write_checked(manifest_path: Path, text: str, model_id: str, hashes: dict[str, str]) -> None:
    """Replace the manifest with `text` only if it validates and lists `hashes` for the model."""
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        check = load_manifest(tmp).get(model_id)
        for file_path, digest in hashes.items():
            listed = check.file(file_path)
            if listed is None or listed.sha256 != digest:
                raise ManifestError(f"{manifest_path}: sha256 of {file_path!r} not recorded")
        os.replace(tmp, manifest_path)
    finally:
        tmp.unlink(missing_ok=True)


def _record_file_list(manifest_path: Path, model_id: str, hashes: dict[str, str]) -> None:
    """Turn a model's `files: []` into the given files with their sha256."""
    lines = manifest_path.read_text(encoding="utf-8").splitlines(keepends=True)
    start, end = _entry_lines(lines, manifest_path, model_id)
    for i in range(start, end):
        if m := re.match(r"(\s*)files:\s*\[\]\s*(#.*)?$", lines[i]):
            pad = m[1] + "  "
            listed = [f"{pad}- {{path: {json.dumps(name)}, sha256: {digest}}}\n" for name, digest in hashes.items()]
            lines[i : i + 1] = [f"{m[1]}files:\n", *listed]
            break
    else:
        raise ManifestError(f"{manifest_path}: model {model_id!r} has no `files: []` line to fill")
    _write_checked(manifest_path, "".join(lines), model_id, hashes)


def record_hashes(manifest_path: Path, model_id: str, hashes: dict[str, str]) -> None:
    """Write sha256 values into the manifest file in place (comments and layout kept)."""
    lines = manifest_path.read_text(encoding="utf-8").splitlines(keepends=True)
    start, end = _entry_lines(lines, manifest_path, model_id)
    for file_path, digest in hashes.items():
        quoted = rf"['\"]?{re.escape(file_path)}['\"]?"
        done = False
        for i in range(start, end):
            line = lines[i]
            if re.search(rf"\{{\s*path:\s*{quoted}\s*,", line):  # flow style: one line per file
                updated = re.sub(r"sha256:\s*null\b", f"sha256: {digest}", line, count=1)
                done = updated != line
                lines[i] = updated
                break
            if re.match(rf"\s*-\s*path:\s*{quoted}\s*$", line):  # block style: sha256 below
                item_indent = len(line) - len(line.lstrip())
                for j in range(i + 1, end):
                    inner = lines[j]
                    if inner.strip().startswith("-") and len(inner) - len(inner.lstrip()) <= item_indent:
                        break
                    if re.match(r"\s*sha256:\s*null\b", inner):
                        pad = inner[: len(inner) - len(inner.lstrip())]
                        lines[j] = f"{pad}sha256: {digest}\n"
                        done = True
                        break
                break
        if not done:
            raise ManifestError(
                f"{manifest_path}: cannot record sha256 of {file_path!r} in model {model_id!r} "
                "(write it by hand)"
            )
    _write_checked(manifest_path, "".join(lines), model_id, hashes)


# --------------------------------------------------------------------------------------------
# pull


@dataclass(frozen=True)
class Download:
    """Where one file comes from and what it must be."""

    url: str
    headers: dict[str, str]
    relative: str  # under the weights root
    sha256: str | None
    size: int | None


def resolve_source(source: str) -> tuple[str, dict[str, str]]:
    """A downloadable URL and headers for an https:// or hf://org/repo/path source."""
    if not source.startswith("hf://"):
        return source, {}
    org, repo, filename = source[len("hf://"):].split("/", 2)
    try:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers
    except ImportError:
        return f"{HF_ENDPOINT}/{org}/{repo}/resolve/main/{filename}", {}
    return hf_hub_url(f"{org}/{repo}", filename), dict(build_hf_headers())


def hub_sha256(url: str) -> str | None:
    """The sha256 the hub publishes for an LFS file (its ETag), or None when unknown/unreachable."""
    try:
        from huggingface_hub import get_hf_file_metadata

        etag = get_hf_file_metadata(url).etag
    except Exception:  # noqa: BLE001 - no hub, no network, not an LFS file: fall back to first use
        return None
    etag = (etag or "").strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def pull(manifest: Manifest, manifest_path: Path, root: Path, model_id: str) -> int:
    """Download a model's missing files with resume and the hash check; non-zero on any failure."""
    entry = manifest.get(model_id)
    cache = HashCache(root)
    failures: list[str] = []
    recorded: dict[str, str] = {}
    if not entry.files:
        print(f"{entry.id}: the manifest lists no files to download", file=sys.stderr)
    for listed in entry.files:
        relative = f"{entry.path}/{listed.path}"
        try:
            refuse_pickle(relative)
            target = resolve_inside(root, relative)
            if target.is_file():
                if listed.sha256 is None or cache.digest(relative) == listed.sha256:
                    print(f"{relative}: already present", file=sys.stderr)
                    continue
                print(f"{relative}: present but its sha256 differs; downloading again", file=sys.stderr)
            if listed.source is None:
                failures.append(f"{relative}: missing and the manifest names no source")
                continue
            url, headers = resolve_source(listed.source)
            expected = listed.sha256
            if expected is None and listed.source.startswith("hf://"):
                expected = hub_sha256(url)  # the hub's LFS hash beats trusting the first download
            digest = download(Download(url, headers, relative, expected, listed.size), root)
            cache.forget(relative)
            if listed.sha256 is None:
                recorded[listed.path] = digest
                print(f"{relative}: sha256 {digest} recorded (no hash was in the manifest)", file=sys.stderr)
        except (WeightsError, httpx.HTTPError, OSError) as exc:
            failures.append(f"{relative}: {exc}")
    if recorded:
        try:
            record_hashes(manifest_path, entry.id, recorded)
        except (ManifestError, OSError) as exc:  # e.g. a read-only install: say what to write
            print(f"warning: could not record hashes in {manifest_path}: {exc}", file=sys.stderr)
            for path, digest in recorded.items():
                print(f"  {entry.id}: {path}: sha256 {digest}", file=sys.stderr)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def download(item: Download, root: Path, *, attempts: int | None = None) -> str:
    """Fetch one file into `<target>.part` with Range resume, check it, rename it; its sha256."""
    attempts = attempts or MAX_ATTEMPTS
    from tqdm import tqdm

    target = resolve_inside(root, item.relative)
    part = resolve_inside(root, item.relative + ".part")
    created = [p for p in reversed(target.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with httpx.Client(
            follow_redirects=True, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        ) as client, tqdm(
            total=item.size, unit="B", unit_scale=True, desc=item.relative, file=sys.stderr,
            initial=part.stat().st_size if part.exists() else 0,
        ) as bar:
            for attempt in range(attempts):
                try:
                    _fetch(client, item, part, bar)
                    break
                except (httpx.TransportError, _ShortRead) as exc:
                    if attempt == attempts - 1:
                        raise WeightsError(
                            f"{item.relative}: download failed after {attempts} attempts: {exc} "
                            f"(partial data kept in {part.name}; run pull again to resume)"
                        ) from exc
                    time.sleep(RETRY_WAIT_S)
        digest = sha256_file(part)
        if item.sha256 is not None and digest != item.sha256:
            part.unlink()
            raise WeightsError(
                f"{item.relative}: downloaded file's sha256 mismatch: expected {item.sha256}, "
                f"actual {digest}; the partial download was deleted"
            )
        if item.relative.endswith(".safetensors"):
            read_safetensors_header(part)
        os.replace(part, target)
        return digest
    except WeightsError:
        if not part.exists():  # nothing kept: leave no empty folders behind either
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise


class _ShortRead(Exception):
    """The server closed the body before Content-Length bytes arrived."""


def _fetch(client: httpx.Client, item: Download, part: Path, bar: object) -> None:
    """One request: resume from the part file's size when the server honours Range."""
    have = part.stat().st_size if part.exists() else 0
    headers = {**item.headers, "Accept-Encoding": "identity"}  # byte offsets must be the file's
    if have:
        headers["Range"] = f"bytes={have}-"
    with client.stream("GET", item.url, headers=headers) as response:
        if response.status_code == 416 and have:  # the part file is already complete
            return
        response.raise_for_status()
        resumed = response.status_code == 206
        if have and not resumed:
            have = 0  # the server ignored Range: start over
            bar.reset(total=item.size)  # type: ignore[attr-defined]
        length = response.headers.get("Content-Length")
        expected_end = have + int(length) if length is not None else None
        if expected_end is not None and bar.total is None:  # type: ignore[attr-defined]
            bar.total = expected_end  # type: ignore[attr-defined]
        with open(part, "ab" if resumed else "wb") as out:
            for chunk in response.iter_bytes():  # as received: a cut keeps what arrived
                out.write(chunk)
                bar.update(len(chunk))  # type: ignore[attr-defined]
        if expected_end is not None and part.stat().st_size < expected_end:
            raise _ShortRead(f"got {part.stat().st_size} of {expected_end} bytes")
