"""The committed SDK (client/darkroom_client) is what `make sdk` generates from openapi.json."""

from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "client"))
import generate_sdk

SKIPPED_NAMES = {"__pycache__", ".ruff_cache"}


def tree(root: Path) -> dict[str, Path]:
    """Relative path -> file, caches left out."""
    return {
        str(path.relative_to(root)): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not SKIPPED_NAMES & set(path.relative_to(root).parts)
    }


@pytest.fixture(scope="module")
def spec() -> Path:
    if not generate_sdk.SPEC_PATH.exists():
        pytest.skip("openapi.json is not committed yet (the server's workstream writes it)")
    return generate_sdk.SPEC_PATH


def test_recorded_spec_hash_matches_openapi_json(spec: Path) -> None:
    assert generate_sdk.SPEC_HASH_PATH.exists(), "client/openapi.sha256 missing: run `make sdk`"
    recorded = generate_sdk.SPEC_HASH_PATH.read_text().split()[0]
    assert recorded == generate_sdk.spec_sha256(spec), "openapi.json changed since the SDK was generated: run `make sdk`"


def test_regenerated_sdk_equals_the_committed_one(spec: Path, tmp_path: Path) -> None:
    if generate_sdk.installed_generator_version() != generate_sdk.GENERATOR_VERSION:
        pytest.skip(f"needs openapi-python-client=={generate_sdk.GENERATOR_VERSION} (the dev extra pins it)")
    fresh = tmp_path / "fresh" / "darkroom_client"
    generate_sdk.generate(fresh, spec)
    # The committed tree through the same formatter hooks, so the installed ruff version cannot
    # make an up-to-date SDK look stale (or hide a stale one: the hooks only re-format).
    committed = tmp_path / "committed" / "darkroom_client"
    shutil.copytree(generate_sdk.PACKAGE_DIR, committed, ignore=shutil.ignore_patterns(*SKIPPED_NAMES))
    generate_sdk.apply_post_hooks(committed)
    fresh_files, committed_files = tree(fresh), tree(committed)
    assert sorted(fresh_files) == sorted(committed_files), "files differ: run `make sdk`"
    changed = [name for name in fresh_files if not filecmp.cmp(fresh_files[name], committed_files[name], shallow=False)]
    assert changed == [], f"stale generated files: {changed}; run `make sdk`"


def test_a_changed_spec_is_detected(spec: Path, tmp_path: Path) -> None:
    if generate_sdk.installed_generator_version() != generate_sdk.GENERATOR_VERSION:
        pytest.skip(f"needs openapi-python-client=={generate_sdk.GENERATOR_VERSION} (the dev extra pins it)")
    import json

    document = json.loads(spec.read_text())
    schema = document["components"]["schemas"]["GenerateRequest"]
    schema["properties"]["added_for_test"] = {"type": "integer", "title": "Added For Test"}
    changed_spec = tmp_path / "openapi.json"
    changed_spec.write_text(json.dumps(document))
    assert generate_sdk.spec_sha256(changed_spec) != generate_sdk.SPEC_HASH_PATH.read_text().split()[0]
    fresh = tmp_path / "darkroom_client"
    generate_sdk.generate(fresh, changed_spec)
    committed = generate_sdk.PACKAGE_DIR / "models" / "generate_request.py"
    assert "added_for_test" in (fresh / "models" / "generate_request.py").read_text()
    assert not filecmp.cmp(fresh / "models" / "generate_request.py", committed, shallow=False)
