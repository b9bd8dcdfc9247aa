"""Write the app's OpenAPI document: `python -m server.openapi [PATH]` (default openapi.json).

The committed openapi.json is what the client SDK is generated from; a test checks that it
equals the running app's document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from server.app import create_app
from server.settings import Settings


def document() -> dict[str, Any]:
    """The OpenAPI document of an app with default settings (no engine is built)."""
    return create_app(Settings()).openapi()


def render() -> str:
    """The document as stable JSON text (sorted keys, two-space indent)."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the document to PATH (default openapi.json)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "openapi.json")
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
