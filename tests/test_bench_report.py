"""bench.report: the README's performance tables come from every saved result, whatever other JSON sits beside them."""

from __future__ import annotations

import contextlib
import io

from bench.report import RESULTS, engine_table, main


def test_the_report_reads_every_saved_result() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([]) == 0
    text = out.getvalue()
    assert "run14_turbo_layout_a.json" in text and "| sd_turbo | darkroom-vaecompile | 35.8 |" in text


def _result(levers: dict) -> dict:
    record = {"case": "sd_turbo", "system": "darkroom-x", "mode": "saturated", "exact": False, "images_per_s": 100.0,
              "latency_s": 1.0, "levers": levers}
    note = {"case": "sd_turbo", "system": "darkroom-x", "warmup_s": 30.0, "peak_gib": 12.0, "peak_gib_diffusers": 18.0,
            "unet_tflops_saturated": 80.3, "mfu": 0.1}
    return {"matmul_ceiling_tflops": 800.0, "records": [record], "notes": [note]}


def test_the_engine_table_counts_the_unet_and_decoder_work_of_exact_variants_only() -> None:
    row = engine_table(_result({"decoder": "full"}))[2]
    # one UNet row (SD-Turbo: one step, no CFG) and one 512x512 decode per image, 100 images/s
    assert f"{2 * (401.6 + 1257.0) * 1e9 * 100 / 1e12:.1f}" in row and "12.0 (18.0)" in row
    assert engine_table(_result({"decoder": "tiny"}))[2].endswith("fast mode: less work |")
    assert engine_table({"records": [], "notes": []}) == []


def test_the_poisson_row_names_its_http_baseline() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(RESULTS / "gpu_NVIDIA_H200_run15_turbo_poisson.json")])
    assert "p99 = 7.1x unloaded latency through HTTP (p50 2.8x)" in out.getvalue()
