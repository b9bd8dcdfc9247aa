"""The Dockerfile, checked without a Docker engine: hadolint, its structure, and the CLI it runs."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import DOCKERFILE, REPO_ROOT

# A Dockerfile with the usual mistakes; hadolint with our config must reject it.
BAD_DOCKERFILE = """FROM ubuntu
RUN apt-get update && apt-get install python3
RUN pip install fastapi
CMD python3 -m server
"""


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def _index(steps: list[tuple[str, str]], keyword: str, contains: str = "") -> int:
    for i, (k, args) in enumerate(steps):
        if k == keyword and contains in args:
            return i
    raise AssertionError(f"no {keyword} {contains!r} in the Dockerfile")


def test_hadolint_passes(hadolint: str) -> None:
    result = subprocess.run(
        [hadolint, "--config", str(REPO_ROOT / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        check=False, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_rejects_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD_DOCKERFILE)
    result = subprocess.run(
        [hadolint, "--config", str(REPO_ROOT / ".hadolint.yaml"), "--no-color", "--format", "json", str(bad)],
        check=False, capture_output=True, text=True,
    )
    assert result.returncode == 1
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    # untagged base, apt without -y / cleanup, unpinned pip, shell-form CMD
    assert {"DL3006", "DL3014", "DL3009", "DL3013", "DL3025"} <= codes


def test_cuda_runtime_base_image_and_matching_torch_build(steps: list[tuple[str, str]]) -> None:
    base_arg = next(args for k, args in steps if k == "ARG" and args.startswith("BASE_IMAGE="))
    image = base_arg.split("=", 1)[1]
    match = re.fullmatch(r"docker\.io/nvidia/cuda:(\d+)\.(\d+)\.\d+-(cudnn-)?runtime-ubuntu\d\d\.04", image)
    assert match, image
    assert [args for k, args in steps if k == "FROM"] == ["${BASE_IMAGE}"]
    # torch's own CUDA libraries must be the base image's CUDA version (the driver must run both).
    index = next(args for k, args in steps if k == "ARG" and args.startswith("TORCH_INDEX_URL="))
    assert index.split("=", 1)[1] == f"https://download.pytorch.org/whl/cu{match[1]}{match[2]}"
    install = steps[_index(steps, "RUN", "-r /tmp/requirements.txt")][1]
    assert '--extra-index-url "${TORCH_INDEX_URL}"' in install


def test_dependency_layer_is_cached_before_the_source(steps: list[tuple[str, str]]) -> None:
    pyproject = _index(steps, "COPY", "pyproject.toml")
    deps = _index(steps, "RUN", "-r /tmp/requirements.txt")
    first_source = min(_index(steps, "COPY", name) for name in ("pipelines", "server", "weights /weights"))
    assert pyproject < deps < first_source
    # The dependency layer sees pyproject.toml alone, so source edits never invalidate it.
    assert steps[pyproject][1] == "pyproject.toml ./"
    assert all(k != "COPY" for k, _ in steps[pyproject + 1:deps])


def test_non_root_user_weights_volume_healthcheck_entrypoint(steps: list[tuple[str, str]]) -> None:
    user = _index(steps, "USER")
    uid = steps[user][1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000
    assert all(k != "RUN" for k, _ in steps[user:]), "commands after USER would run as the user anyway"
    assert user < _index(steps, "ENTRYPOINT")
    assert json.loads(steps[_index(steps, "VOLUME")][1]) == ["/weights"]
    env = " ".join(args for k, args in steps if k == "ENV")
    assert "DARKROOM_WEIGHTS_ROOT=/weights" in env
    assert steps[_index(steps, "EXPOSE")][1] == "8000"
    healthcheck = steps[_index(steps, "HEALTHCHECK")][1]
    assert "/healthz" in healthcheck and "--interval=" in healthcheck and " CMD [" in healthcheck
    entrypoint = json.loads(steps[_index(steps, "ENTRYPOINT")][1])
    assert entrypoint == ["darkroom", "serve", "--host", "0.0.0.0"]


def test_entrypoint_parses_with_the_cli(steps: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    cli = pytest.importorskip("server.cli")
    settings = pytest.importorskip("server.settings")
    argv = json.loads(steps[_index(steps, "ENTRYPOINT")][1])
    assert all(k != "CMD" for k, _ in steps), "the port comes from DARKROOM_PORT, not a CMD flag"
    args = cli.build_parser().parse_args(argv[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", None)
    # The image's ENV, read as the server reads it: the port the healthcheck probes.
    env = dict(
        item.split("=", 1) for k, a in steps if k == "ENV" for item in a.split() if "=" in item
    )
    for name, value in env.items():
        if name.startswith("DARKROOM_"):
            monkeypatch.setenv(name, value)
    loaded = settings.Settings()
    assert (loaded.port, loaded.weights_root) == (8000, "/weights")


def _dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes `path`: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_copied_paths_exist_and_are_in_the_build_context(steps: list[tuple[str, str]]) -> None:
    ignored = _dockerignore_patterns()
    sources = []
    for keyword, args in steps:
        if keyword == "COPY":
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert {"pyproject.toml", "server", "pipelines"} <= set(sources)
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source, ignored), f"{source} is dockerignored"
    assert dockerignored("weights/sd15/v1-5-pruned-emaonly.safetensors", ignored)  # pulled locally
    # Every committed weight file ships in the image.
    committed = subprocess.run(
        ["git", "ls-files", "weights"], cwd=REPO_ROOT, check=False, capture_output=True, text=True
    ).stdout.split()
    assert [path for path in committed if dockerignored(path, ignored)] == []
    for heavy in (".venv", ".git", "tests", "client"):
        assert heavy in ignored


def test_darkroom_environment_names_are_settings() -> None:
    settings = pytest.importorskip("server.settings")
    fields = set(settings.Settings.model_fields)
    names = set(re.findall(r"\bDARKROOM_([A-Z0-9_]+)", DOCKERFILE.read_text()))
    names |= set(re.findall(r"\bDARKROOM_([A-Z0-9_]+)", (REPO_ROOT / "docker-compose.yml").read_text()))
    assert names, "no DARKROOM_ settings found"
    unknown = {name for name in names if name.lower() not in fields}
    assert not unknown, f"DARKROOM_* names that Settings does not read: {sorted(unknown)}"


def test_compile_toolchain_and_cache_volume(steps: list[tuple[str, str]]) -> None:
    """torch.compile (on in docker-compose.yml) builds Triton's C launcher at run time, and its caches
    sit on their own volume so a restart's warm-up reuses them."""
    apt = next(args for k, args in steps if k == "RUN" and "apt-get install" in args)
    assert {"gcc", "libc6-dev", "python3-dev"} <= set(apt.split())
    assert ["/cache"] in [json.loads(args) for k, args in steps if k == "VOLUME"]
    env = " ".join(args for k, args in steps if k == "ENV")
    assert "TORCHINDUCTOR_CACHE_DIR=/cache/inductor" in env and "TRITON_CACHE_DIR=/cache/triton" in env
    assert "/cache" in next(args for k, args in steps if k == "RUN" and "chown" in args)  # writable by the user
