"""Regenerate the Darkroom SDK (client/darkroom_client) from the committed openapi.json.

`make sdk` runs this. The output depends only on openapi.json, the pinned generator version and
client/openapi-python-client.yaml, so `tests/client/test_sdk_fresh.py` can regenerate into a
temporary directory and demand a byte-identical tree.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

GENERATOR = "openapi-python-client"
GENERATOR_VERSION = "0.29.1"  # pinned: another version generates different code
CLIENT_DIR = Path(__file__).resolve().parent
REPO_ROOT = CLIENT_DIR.parent
SPEC_PATH = REPO_ROOT / "openapi.json"
CONFIG_PATH = CLIENT_DIR / "openapi-python-client.yaml"
PACKAGE_DIR = CLIENT_DIR / "darkroom_client"
SPEC_HASH_PATH = CLIENT_DIR / "openapi.sha256"


def installed_generator_version() -> str | None:
    """The installed openapi-python-client version, or None when it is not installed."""
    try:
        return importlib.metadata.version(GENERATOR)
    except importlib.metadata.PackageNotFoundError:
        return None


def spec_sha256(spec_path: Path = SPEC_PATH) -> str:
    """Hex sha256 of the OpenAPI document the SDK is generated from."""
    return hashlib.sha256(spec_path.read_bytes()).hexdigest()


def _tool_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (generator, ruff) first on PATH."""
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def apply_post_hooks(directory: Path) -> None:
    """Run the config's post-hooks (the formatter) in `directory`, as the generator does."""
    config = yaml.safe_load(CONFIG_PATH.read_text())
    for hook in config.get("post_hooks", []):
        subprocess.run(shlex.split(hook), check=True, cwd=directory, env=_tool_env())


def generate(package_dir: Path, spec_path: Path = SPEC_PATH) -> None:
    """Generate the package into `package_dir` (replaced if it exists) from `spec_path`."""
    version = installed_generator_version()
    if version != GENERATOR_VERSION:
        raise RuntimeError(
            f"{GENERATOR}=={GENERATOR_VERSION} is required (installed: {version}); "
            f"pip install '{GENERATOR}=={GENERATOR_VERSION}'"
        )
    with tempfile.TemporaryDirectory() as tmp:
        # Generate beside, then swap, so a failed run never leaves a half-written package.
        staged = Path(tmp) / "darkroom_client"
        subprocess.run(
            [
                GENERATOR,
                "generate",
                "--path", str(spec_path),
                "--config", str(CONFIG_PATH),
                "--meta", "none",
                "--output-path", str(staged),
                "--fail-on-warning",
            ],
            check=True,
            cwd=tmp,
            env=_tool_env(),
        )
        if package_dir.exists():
            shutil.rmtree(package_dir)
        shutil.copytree(staged, package_dir)


def main(argv: list[str] | None = None) -> int:
    """Regenerate client/darkroom_client and record the hash of the spec it came from."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC_PATH)
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR)
    args = parser.parse_args(argv)
    generate(args.out, args.spec)
    if args.out == PACKAGE_DIR:
        SPEC_HASH_PATH.write_text(f"{spec_sha256(args.spec)}  openapi.json\n")
    print(f"generated {args.out} from {args.spec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
