"""`darkroom weights list | verify | pull` against files on disk and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from server.cli import main as cli
from server.commands import weights as weights_command
from tests.pipelines.loading.tiny_checkpoints import write_safetensors


class _Served:
    """What the test server serves and what it saw."""

    def __init__(self) -> None:
        self.body = b""
        self.cut_first_after: int | None = None  # bytes sent before the first response is cut
        self.ranges: list[str | None] = []
        self.bytes_sent = 0


@pytest.fixture()
def http_server() -> Iterator[tuple[str, _Served]]:
    served = _Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            served.ranges.append(rng)
            body, status, start = served.body, 200, 0
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.end_headers()
                    return
                status = 206
            payload = body[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if served.cut_first_after is not None and len(served.ranges) == 1:
                payload = payload[: served.cut_first_after]  # then the connection closes
            # counted before writing: the client can finish reading (and the test assert) before this thread
            # returns from the write
            served.bytes_sent += len(payload)
            self.wfile.write(payload)
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tiny.safetensors", served
    finally:
        server.shutdown()
        server.server_close()


def _checkpoint_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "src" / "tiny.safetensors"
    write_safetensors(path, {"w": torch.arange(200_000, dtype=torch.float32), "b": torch.ones(10)})
    return path.read_bytes()


def _manifest(tmp_path: Path, url: str, sha256: str | None) -> Path:
    data = {
        "default_model": "tiny",
        "models": [{
            "id": "tiny", "family": "sd1", "format": "single_file", "path": "tiny",
            "files": [{"path": "tiny.safetensors", "sha256": sha256, "source": url}],
        }],
    }
    path = tmp_path / "manifest.yaml"
    path.write_text("# comment kept\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def _run(manifest: Path, root: Path, *argv: str) -> int:
    return cli(["weights", "--manifest", str(manifest), "--root", str(root), *argv])


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch) -> None:
    monkeypatch.setattr(weights_command, "RETRY_WAIT_S", 0.0)


def test_pull_resumes_after_cut_connection(http_server, tmp_path: Path, capsys) -> None:
    url, served = http_server
    served.body = _checkpoint_bytes(tmp_path)
    cut = len(served.body) // 3
    served.cut_first_after = cut
    digest = hashlib.sha256(served.body).hexdigest()
    root = tmp_path / "weights"
    manifest = _manifest(tmp_path, url, digest)

    assert _run(manifest, root, "pull", "tiny") == 0
    target = root / "tiny" / "tiny.safetensors"
    assert target.read_bytes() == served.body
    assert not (root / "tiny" / "tiny.safetensors.part").exists()
    assert served.ranges == [None, f"bytes={cut}-"]  # the second request resumed at the cut
    assert served.bytes_sent == len(served.body)  # nothing downloaded twice
    assert "tiny.safetensors" in capsys.readouterr().err  # the progress bar names the file

    assert _run(manifest, root, "verify", "tiny") == 0
    assert _run(manifest, root, "pull", "tiny") == 0  # already present: no request
    assert len(served.ranges) == 2


def test_pull_interrupted_keeps_part_and_next_pull_resumes(http_server, tmp_path: Path, monkeypatch, capsys) -> None:
    url, served = http_server
    served.body = _checkpoint_bytes(tmp_path)
    served.cut_first_after = 1000
    root = tmp_path / "weights"
    manifest = _manifest(tmp_path, url, hashlib.sha256(served.body).hexdigest())
    monkeypatch.setattr(weights_command, "MAX_ATTEMPTS", 1)

    assert _run(manifest, root, "pull", "tiny") == 1
    err = capsys.readouterr().err
    assert "tiny/tiny.safetensors" in err and "run pull again to resume" in err
    part = root / "tiny" / "tiny.safetensors.part"
    assert part.stat().st_size == 1000 and not (root / "tiny" / "tiny.safetensors").exists()

    assert _run(manifest, root, "pull", "tiny") == 0
    assert served.ranges == [None, "bytes=1000-"]
    assert (root / "tiny" / "tiny.safetensors").read_bytes() == served.body


def test_pull_wrong_hash_leaves_nothing(http_server, tmp_path: Path, capsys) -> None:
    url, served = http_server
    served.body = _checkpoint_bytes(tmp_path)
    root = tmp_path / "weights"
    root.mkdir()
    manifest = _manifest(tmp_path, url, "ab" * 32)

    assert _run(manifest, root, "pull", "tiny") == 1
    err = capsys.readouterr().err
    assert "tiny/tiny.safetensors" in err and "ab" * 32 in err
    assert hashlib.sha256(served.body).hexdigest() in err
    assert [p for p in root.rglob("*")] == []  # no part file, no target, no empty folder


def test_pull_without_hash_records_it_in_manifest(http_server, tmp_path: Path) -> None:
    url, served = http_server
    served.body = _checkpoint_bytes(tmp_path)
    root = tmp_path / "weights"
    manifest = _manifest(tmp_path, url, None)
    assert _run(manifest, root, "pull", "tiny") == 0
    text = manifest.read_text()
    assert f"sha256: {hashlib.sha256(served.body).hexdigest()}" in text
    assert text.startswith("# comment kept")


def test_verify_names_each_bad_file_and_update_fills_nulls(tmp_path: Path, capsys) -> None:
    root = tmp_path / "weights"
    write_safetensors(root / "m" / "a.safetensors", {"x": torch.ones(100)})
    write_safetensors(root / "m" / "b.safetensors", {"x": torch.zeros(100)})
    good = hashlib.sha256((root / "m" / "a.safetensors").read_bytes()).hexdigest()
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "default_model: m\n"
        "models:\n"
        "  - id: m\n"
        "    family: sd1\n"
        "    format: diffusers\n"
        "    path: m\n"
        "    files:\n"
        f"      - {{path: a.safetensors, sha256: {good}}}\n"
        "      - {path: b.safetensors, sha256: null}  # FILL\n"
        "      - path: c.json\n"
        "        sha256: null  # FILL by verify --update\n"
    )
    (root / "m" / "c.json").write_text("{}")
    assert _run(manifest, root, "verify", "m") == 0
    assert "b.safetensors: sha256 unknown" in capsys.readouterr().out

    assert _run(manifest, root, "verify", "m", "--update") == 0
    text = manifest.read_text()
    assert "sha256: null" not in text
    assert hashlib.sha256(b"{}").hexdigest() in text and "FILL by" not in text

    # now break two files: each is named, exit status non-zero
    data = (root / "m" / "a.safetensors").read_bytes()
    (root / "m" / "a.safetensors").write_bytes(data[:-10])
    (root / "m" / "c.json").unlink()
    assert _run(manifest, root, "verify", "m") == 1
    err = capsys.readouterr().err
    assert "m/a.safetensors" in err and "truncated" in err
    assert "m/c.json: missing" in err


def test_list_shows_presence(tmp_path: Path, capsys) -> None:
    root = tmp_path / "weights"
    write_safetensors(root / "tiny" / "tiny.safetensors", {"x": torch.ones(1)})
    manifest = _manifest(tmp_path, "https://example.invalid/x.safetensors", None)
    assert _run(manifest, root, "list") == 0
    out = capsys.readouterr().out
    assert "tiny (default)" in out and "present (1 without sha256)" in out


def test_hf_source_resolves_to_hub_download_url() -> None:
    url, _ = weights_command.resolve_source("hf://org/repo/sub/dir/file.safetensors")
    assert url == "https://huggingface.co/org/repo/resolve/main/sub/dir/file.safetensors"
    assert weights_command.resolve_source("https://x.test/a.safetensors")[0] == "https://x.test/a.safetensors"


def test_unknown_model_exits_2(tmp_path: Path, capsys) -> None:
    manifest = _manifest(tmp_path, "https://example.invalid/x.safetensors", None)
    assert _run(manifest, tmp_path, "pull", "nope") == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_verify_update_lists_files_of_an_entry_without_files(tmp_path: Path, capsys) -> None:
    """An entry shipped with `files: []` (the bundled model) gets its files and hashes listed."""
    root = tmp_path / "weights"
    write_safetensors(root / "b" / "unet" / "w.safetensors", {"x": torch.ones(4)})
    (root / "b" / "model_index.json").write_text("{}")
    (root / "b" / "unet" / "w.safetensors.part").write_bytes(b"half")  # never listed
    write_safetensors(root / "shared" / "vae" / "v.safetensors", {"y": torch.ones(2)})
    (root / "b" / "vae").symlink_to(root / "shared" / "vae")  # a component shared by symlink
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "default_model: b\n"
        "models:\n"
        "  # the bundled model\n"
        "  - id: b\n"
        "    family: bundled\n"
        "    format: diffusers\n"
        "    path: b\n"
        "    files: []\n"
        "    description: kept\n"
    )
    assert _run(manifest, root, "verify", "b") == 0
    assert "no files listed" in capsys.readouterr().out
    assert _run(manifest, root, "verify", "b", "--update") == 0
    from pipelines.manifest import load_manifest

    entry = load_manifest(manifest).get("b")
    assert [f.path for f in entry.files] == ["model_index.json", "unet/w.safetensors", "vae/v.safetensors"]
    assert entry.files[0].sha256 == hashlib.sha256(b"{}").hexdigest()
    assert entry.description == "kept" and "# the bundled model" in manifest.read_text()
    assert _run(manifest, root, "verify", "b") == 0


def test_hf_source_without_hash_is_checked_against_the_hubs_sha256(http_server, tmp_path: Path, monkeypatch, capsys) -> None:
    """For hf:// files with no manifest hash, the hub's published LFS sha256 is the expected one."""
    url, served = http_server
    served.body = _checkpoint_bytes(tmp_path)
    monkeypatch.setattr(weights_command, "resolve_source", lambda source: (url, {}))
    monkeypatch.setattr(weights_command, "hub_sha256", lambda u: "cd" * 32)
    root = tmp_path / "weights"
    manifest = _manifest(tmp_path, "hf://org/repo/tiny.safetensors", None)
    assert _run(manifest, root, "pull", "tiny") == 1
    assert "cd" * 32 in capsys.readouterr().err
    assert "sha256: null" in manifest.read_text()  # nothing recorded from a rejected download

    monkeypatch.setattr(weights_command, "hub_sha256", lambda u: hashlib.sha256(served.body).hexdigest())
    assert _run(manifest, root, "pull", "tiny") == 0
    assert hashlib.sha256(served.body).hexdigest() in manifest.read_text()
