"""The image's entry point and both healthchecks, run as the container would run them, without Docker.

`darkroom serve --host 0.0.0.0` starts with the Dockerfile's ENV (weights root and port moved
to a temporary folder and a free port); the exact HEALTHCHECK command of the Dockerfile
(/healthz) and the healthcheck test of docker-compose.yml (/readyz) must then succeed, fail
against a closed port, and SIGTERM must end the server cleanly (the drain path).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import COMPOSE_FILE, DOCKERFILE, REPO_ROOT
from .test_dockerfile import instructions

STARTUP_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in args.split() if "=" in item)
    return {k: v for k, v in env.items() if k.startswith("DARKROOM_")}


def _exec_form(command: list[str]) -> list[str]:
    """An image command run here: `python` is this interpreter, `darkroom` this venv's script."""
    tools = {"python": sys.executable, "darkroom": str(Path(sys.executable).parent / "darkroom")}
    return [tools.get(command[0], command[0]), *command[1:]]


def dockerfile_healthcheck() -> list[str]:
    args = next(a for k, a in instructions(DOCKERFILE.read_text()) if k == "HEALTHCHECK")
    return _exec_form(json.loads(args.split(" CMD ", 1)[1]))


def compose_healthcheck() -> list[str]:
    test = yaml.safe_load(COMPOSE_FILE.read_text())["x-darkroom"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return _exec_form(test[1:])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    pytest.importorskip("server.commands.serve", reason="darkroom serve is not in the tree yet")
    entrypoint = json.loads(next(a for k, a in instructions(DOCKERFILE.read_text()) if k == "ENTRYPOINT"))
    command = _exec_form(entrypoint)
    if not Path(command[0]).exists():
        pytest.skip("the `darkroom` console script is not installed in this environment")
    weights_root = tmp_path_factory.mktemp("weights")
    bundled = REPO_ROOT / "weights" / "bundled"
    if bundled.is_dir():  # as the image does: the bundled model inside the weights volume
        shutil.copytree(bundled, weights_root / "bundled")
    env = {
        **os.environ,
        **_dockerfile_env(),
        "DARKROOM_WEIGHTS_ROOT": str(weights_root),
        "DARKROOM_PORT": str(_free_port()),
        "DARKROOM_DEVICE": "cpu",
        "DARKROOM_DRAIN_TIMEOUT_S": "5",
        "OMP_NUM_THREADS": "1",
    }
    log_path = weights_root.parent / "serve.log"  # a file, not a pipe: a full pipe would block the server
    log_file = log_path.open("wb")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    env["SERVE_LOG"] = str(log_path)
    url = f"http://127.0.0.1:{env['DARKROOM_PORT']}/readyz"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(f"darkroom serve exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("darkroom serve did not become ready")
        time.sleep(0.5)
    try:
        yield process, env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_file.close()


def test_healthchecks_pass_against_the_entrypoint(served: tuple[subprocess.Popen[bytes], dict[str, str]]) -> None:
    _, env = served
    for command in (dockerfile_healthcheck(), compose_healthcheck()):
        result = subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (command, result.stderr)


def test_healthchecks_fail_against_a_closed_port(served: tuple[subprocess.Popen[bytes], dict[str, str]]) -> None:
    _, env = served
    closed = {**env, "DARKROOM_PORT": str(_free_port())}
    for command in (dockerfile_healthcheck(), compose_healthcheck()):
        result = subprocess.run(command, env=closed, check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and "Connection refused" in result.stderr


def test_sigterm_drains_and_exits_cleanly(served: tuple[subprocess.Popen[bytes], dict[str, str]]) -> None:
    process, env = served
    process.send_signal(signal.SIGTERM)  # what `docker stop` sends (STOPSIGNAL / stop_signal)
    returncode = process.wait(timeout=float(env["DARKROOM_DRAIN_TIMEOUT_S"]) + 30)
    # uvicorn re-raises the caught signal after its graceful shutdown (docker shows exit 143).
    assert returncode in (0, -signal.SIGTERM)
    log = Path(env["SERVE_LOG"]).read_text()
    assert "Application shutdown complete" in log, log[-2000:]  # the lifespan's drain ran
