"""bench/http_overhead.py end to end in its shortest mode: a real server subprocess, a few requests
per response mode, and the shape of the JSON it writes. No timing is asserted (timings belong
in bench/)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import http_overhead

RECORD_KEYS = {
    "variant", "mode", "profiled", "requests", "ok", "failures", "wall_s", "requests_per_s", "latency_p50_ms",
    "latency_p99_ms", "server_cpu_s", "server_cpu_ms_per_request", "gc_collections", "gc_s", "cpu", "torch",
    "server_source", "width", "height",
}


def test_short_run_writes_one_record_per_mode_with_every_field(tmp_path: Path) -> None:
    output = tmp_path / "results" / "overhead.json"
    args = http_overhead.parse_args(["--variant", "short", "--modes", "json_png,raw_jpeg", "--requests", "6",
                                     "--warmup", "2", "--concurrency", "3", "--max-batch", "4",
                                     "--output", str(output)])
    http_overhead.run(args)
    records = json.loads(output.read_text())["records"]
    assert [(r["variant"], r["mode"], r["profiled"]) for r in records] == [
        ("short", "json_png", False), ("short", "raw_jpeg", False)]
    for record in records:
        assert RECORD_KEYS <= set(record)
        assert record["requests"] == 6 and record["ok"] == 6 and record["failures"] == {}
        assert record["server_source"] == "working tree"
        assert (record["width"], record["height"]) == (http_overhead.SIDE, http_overhead.SIDE)
        # /proc counts CPU in clock ticks (10 ms): six tiny requests may not reach one
        assert record["server_cpu_s"] >= 0 and record["server_cpu_ms_per_request"] >= 0
        assert len(record["gc_collections"]) == 3 and len(record["gc_s"]) == 3
        assert isinstance(record["cpu"], str) and record["cpu"]
    # a raw JPEG body is a JPEG, not JSON with base64 in it: the two modes answer differently
    assert records[0]["body_bytes_mean"] != records[1]["body_bytes_mean"]
    # a second run appends to the same file
    http_overhead.run(http_overhead.parse_args(["--variant", "again", "--modes", "raw_png", "--requests", "2",
                                                "--warmup", "1", "--concurrency", "2", "--output", str(output)]))
    assert [r["variant"] for r in json.loads(output.read_text())["records"]] == ["short", "short", "again"]


def test_profile_mode_lists_the_top_functions(tmp_path: Path) -> None:
    output = tmp_path / "overhead.json"
    args = http_overhead.parse_args(["--variant", "prof", "--modes", "raw_png", "--requests", "4", "--warmup", "1",
                                     "--concurrency", "2", "--profile", "--output", str(output)])
    (record,) = http_overhead.run(args)
    assert record["profiled"] is True
    for key in ("profile_top_cumulative", "profile_top_self"):
        entries = record[key]
        assert len(entries) == 15
        assert set(entries[0]) == {"function", "calls", "self_s", "cumulative_s"}
    cumulative = [e["cumulative_s"] for e in record["profile_top_cumulative"]]
    assert cumulative == sorted(cumulative, reverse=True)
    # the server's own code is in the listing, paths relative to the repository
    text = Path(record["profile_text"]).read_text()
    assert "server/app.py" in text and f"{Path.cwd()}/server" not in text
    assert "Ordered by: cumulative time" in text and "Ordered by: internal time" in text


def test_unknown_mode_is_refused() -> None:
    try:
        http_overhead.parse_args(["--modes", "json_png,xml"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("an unknown mode was accepted")
