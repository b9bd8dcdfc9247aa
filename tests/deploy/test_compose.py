"""docker-compose.yml, checked without a Docker engine: `docker compose config` and the compose-spec schema."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import COMPOSE_FILE, REPO_ROOT

MIN_GRACE_S = 45.0  # the engine's drain needs this long before SIGKILL


def go_duration_s(text: str) -> float:
    """Seconds in a compose duration ("1m0s", "90s", "1m30s", "500ms")."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def compose_config(command: list[str], compose_file: Path) -> dict[str, Any]:
    """The file as compose resolves it (anchors, merges, variables), as JSON."""
    result = subprocess.run(
        [*command, "-f", str(compose_file), "--project-directory", str(REPO_ROOT), "config", "--format", "json"],
        check=False, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_service(service: dict[str, Any], device_id: str, host_port: str) -> None:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "device_ids": [device_id]}]
    volumes = [(v["type"], v["source"], v["target"]) for v in service["volumes"]]
    assert volumes == [("volume", "weights", "/weights"), ("volume", "compile-cache", "/cache")]
    env = service["environment"]
    assert env["DARKROOM_WEIGHTS_ROOT"] == "/weights"
    assert env["DARKROOM_DEVICE"] == "cuda"
    assert env["DARKROOM_API_KEYS"] == ""  # open unless the operator sets keys
    assert env["DARKROOM_COMPILE_UNET"] == "true"  # the measured winner, warmed up before readiness
    test = " ".join(service["healthcheck"]["test"])
    assert service["healthcheck"]["test"][0] == "CMD" and "/readyz" in test
    grace_s = go_duration_s(service["stop_grace_period"])
    assert grace_s >= MIN_GRACE_S
    # Shutdown (server/commands/serve.py): the readiness delay, uvicorn's graceful wait for open
    # requests, then the engine's drain of queued jobs, the last two each up to the drain timeout.
    worst_shutdown_s = float(env["DARKROOM_SHUTDOWN_DELAY_S"]) + 2 * float(env["DARKROOM_DRAIN_TIMEOUT_S"])
    assert grace_s >= worst_shutdown_s + 5, "SIGKILL would cut the drain short"
    assert service["stop_signal"] == "SIGTERM"
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    assert [(p["target"], p["published"]) for p in service["ports"]] == [(8000, host_port)]


def test_compose_config_resolves_the_gpu_service(compose: list[str]) -> None:
    config = compose_config(compose, COMPOSE_FILE)
    assert set(config["services"]) == {"darkroom"}
    check_service(config["services"]["darkroom"], device_id="0", host_port="8000")
    assert config["services"]["darkroom"]["build"]["dockerfile"] == "Dockerfile"
    assert {"weights", "compile-cache"} <= set(config["volumes"])


def uncomment_per_gpu_example(text: str) -> str:
    """The compose file with its commented one-service-per-GPU block switched on."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # darkroom-gpu1:"))
    end = start
    while end < len(lines) and lines[end].startswith("  #"):
        end += 1
    block = [line.replace("  # ", "  ", 1).replace("  #", "", 1) if line.startswith("  # ") else line for line in lines[start:end]]
    return "\n".join(lines[:start] + block + lines[end:]) + "\n"


def test_commented_per_gpu_example_is_valid(compose: list[str], tmp_path: Path) -> None:
    two_gpus = tmp_path / "docker-compose.yml"
    two_gpus.write_text(uncomment_per_gpu_example(COMPOSE_FILE.read_text()))
    config = compose_config(compose, two_gpus)
    assert set(config["services"]) == {"darkroom", "darkroom-gpu1"}
    check_service(config["services"]["darkroom"], device_id="0", host_port="8000")
    check_service(config["services"]["darkroom-gpu1"], device_id="1", host_port="8001")


def test_compose_config_rejects_a_broken_file(compose: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period: 100s", "stop_grace_period: forever"))
    result = subprocess.run(
        [*compose, "-f", str(broken), "--project-directory", str(REPO_ROOT), "config", "-q"],
        check=False, capture_output=True, text=True,
    )
    assert result.returncode != 0 and "stop_grace_period" in result.stderr


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    pytest.importorskip("jsonschema")
    try:
        import importlib.resources

        path = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        return json.loads(path.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("compose-spec schema not available (pip install check-jsonschema)")


def schema_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_spec_schema(compose_schema: dict[str, Any]) -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert schema_errors(compose_schema, document) == []
    two_gpus = yaml.safe_load(uncomment_per_gpu_example(COMPOSE_FILE.read_text()))
    assert schema_errors(compose_schema, two_gpus) == []


def test_schema_rejects_a_malformed_gpu_reservation(compose_schema: dict[str, Any]) -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    broken = copy.deepcopy(document)
    broken["services"]["darkroom"]["deploy"]["resources"]["reservations"]["devices"][0]["gpus"] = 1
    errors = schema_errors(compose_schema, broken)
    assert len(errors) == 1 and "gpus" in errors[0]
