"""The Python examples of client/README.md run, as written, against a live server."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from .conftest import CLIENT_DIR, LiveServer

README_URL = "http://127.0.0.1:8000"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (CLIENT_DIR / "README.md").read_text(), flags=re.DOTALL)


def test_readme_has_the_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    assert all(README_URL in block for block in blocks)


@pytest.mark.parametrize("index", range(3))
def test_readme_example_runs(index: int, live_server: LiveServer, tmp_path: Path) -> None:
    code = python_blocks()[index].replace(README_URL, live_server.url)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write files (circle.png)
    try:
        with contextlib.redirect_stdout(out):
            # The README is this repository's own text: running it is the point of the test.
            exec(compile(code, f"client/README.md example {index + 1}", "exec"), {"__name__": "__main__"})  # noqa: S102
    finally:
        os.chdir(cwd)
    printed = out.getvalue()
    if index == 0:
        assert (tmp_path / "circle.png").stat().st_size > 0
        assert "job ended with result" in printed and "step " in printed
        assert printed.rstrip().endswith("422 invalid_request width")
    elif index == 1:
        assert re.fullmatch(r"\(\d+, \d+\)\n", printed)
    else:
        assert printed.rstrip().endswith("2")  # two images from the OpenAI-shaped route
