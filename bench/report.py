"""The README's performance tables, generated from bench/results/*.json.

    python -m bench.report                       # prints Markdown for bench/results/
    python -m bench.report RESULT.json [...]     # those files only (e.g. a fresh run's $OUT)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def case_table(result: dict) -> list[str]:
    """One row per (case, system, mode), with the ratio to diffusers' figure for the same mode."""
    records = result["records"]
    best: dict[str, float] = {}
    batch1: dict[str, float] = {}
    for r in records:
        if r["system"] != "diffusers":
            continue
        if r["mode"] == "batch1":
            batch1[r["case"]] = r["latency_s"]
        best[r["case"]] = max(best.get(r["case"], 0.0), r["images_per_s"])
    lines = [
        "| case | system | mode | exact | images/s | latency s | vs diffusers |",
        "|---|---|---|---|---|---|---|",
    ]
    probed = any(str(n.get("probe", "")).endswith(":fp32") and "stages" in n for n in result.get("notes", []))
    for r in records:
        exact = "yes" if r["exact"] else "no"
        if not probed and r["system"] != "diffusers" and not r["exact"]:
            exact = "not probed"  # no fp32 probe in this call: fp16 random-weight pixels always differ
        if r["mode"] == "poisson80":
            source = " through HTTP" if r.get("unloaded_source") == "http" else ""
            ratio = f"p99 = {r['p99_over_unloaded']:.1f}x unloaded latency{source}"
            if r.get("p50_over_unloaded") is not None:
                ratio += f" (p50 {r['p50_over_unloaded']:.1f}x)"
        elif r["mode"] == "batch1" and r["case"] in batch1:
            ratio = f"{r['latency_s'] / batch1[r['case']]:.2f}x latency"
        elif r["mode"] != "batch1" and r["case"] in best:
            ratio = f"{r['images_per_s'] / best[r['case']]:.2f}x best img/s"
        else:
            ratio = ""
        extra = ""
        if r.get("p99_s") is not None:
            clients = f"{r['concurrency']} clients, " if r.get("concurrency") else ""
            extra = f" ({clients}p99 {r['p99_s']:.2f} s)"
        if r.get("batch") is not None and r["system"] == "diffusers":
            extra = f" (batch {r['batch']})"
        system = r["system"]
        if r.get("engine") or r.get("response"):  # HTTP runs: which engine variant, which response kind
            system += f" [{', '.join(x for x in (r.get('engine'), r.get('response')) if x)}]"
        elif r.get("output_format") not in (None, "png") and r["mode"] != "batch1":
            system += f" [{r['output_format']}]"
        lines.append(
            f"| {r['case']} | {system} | {r['mode']}{extra} | {exact} | "
            f"{r['images_per_s']:.2f} | {r['latency_s']:.3f} | {ratio} |"
        )
    return lines


DECODER_GMAC = {512: 1257.0, 1024: 5235.0}  # the SD VAE decoder per image (../shared/reference/ANCHORS.md)


def engine_table(result: dict) -> list[str]:
    """One row per Darkroom variant of the call: warm-up (compilation included), peak GPU memory beside
    diffusers', and the arithmetic rate at saturation against the call's matmul ceiling: the UNet alone,
    and the UNet with the VAE decoder (the exact pipeline's work per image; not for fast variants, which do
    less: the UNet column counts their work as if every step were guided)."""
    from bench.gpu import CASES

    ceiling = result.get("matmul_ceiling_tflops") or float("nan")
    lines = ["| case | system | warm-up s | peak GPU GiB (diffusers) | UNet TFLOP/s (MFU) | UNet + decoder TFLOP/s (MFU) |",
             "|---|---|---|---|---|---|"]
    for n in result.get("notes", []):
        if "warmup_s" not in n:
            continue
        case = CASES.get(n["case"])
        saturated = [r for r in result["records"] if r["system"] == n["system"] and r["mode"] == "saturated"]
        levers = saturated[0].get("levers", {}) if saturated else {}
        rates = [r["images_per_s"] for r in saturated]
        whole = ""
        fast_label = "-fast" in n["system"] or "tinyvae" in n["system"]  # records before the levers field
        if levers.get("guidance_interval") or levers.get("decoder") == "tiny" or fast_label:
            whole = "fast mode: less work"
        elif case is not None and rates:
            gmac = case.unet_gmac * (2 if case.guidance > 0 else 1) * case.steps + DECODER_GMAC.get(case.side, 0.0)
            tflops = 2 * gmac * 1e9 * rates[0] / 1e12
            whole = f"{tflops:.1f} ({tflops / ceiling:.3f})"
        lines.append(f"| {n['case']} | {n['system']} | {n['warmup_s']} | {n.get('peak_gib', '?')} ({n.get('peak_gib_diffusers', '?')}) | "
                     f"{n.get('unet_tflops_saturated', '?')} ({n.get('mfu', '?')}) | {whole} |")
    return lines if len(lines) > 2 else []


def lever_table(result: dict) -> list[str]:
    """One row per lever measurement; the module (UNet or VAE decoder) in the first column."""
    lines = ["| module | lever | rows | ms | TFLOP/s | MFU | max abs diff vs eager |", "|---|---|---|---|---|---|---|"]
    for r in result.get("levers", []):
        module = r.get("model", "sd15")
        if "error" in r:
            lines.append(f"| {module} | {r['lever']} | {r['rows']} | failed: {r['error'][:90]} | | | |")
            continue
        diff = "" if r.get("max_abs_diff") is None else f"{r['max_abs_diff']:.2g}"
        compile_s = f" (first call {r['compile_s']} s)" if "compile_s" in r else ""
        lines.append(f"| {module} | {r['lever']}{compile_s} | {r['rows']} | {r['ms']} | {r['tflops']} | {r['mfu']} | {diff} |")
    return lines


def fp8_quality_table(quality: dict) -> list[str]:
    """Judge accuracy of the bundled model, the UNet in bf16 vs its linears in fp8."""
    lines = ["| UNet | split | caption acc | colour | shape | size | position | FID (judge) |", "|---|---|---|---|---|---|---|---|"]
    for r in quality.get("records", []):
        lines.append(f"| {str(r['model']).rstrip('_')} | {r['split']} | {r['acc_caption']:.3f} | {r['acc_colour']:.3f} | "
                     f"{r['acc_shape']:.3f} | {r.get('acc_size', float('nan')):.3f} | {r.get('acc_position', float('nan')):.3f} | "
                     f"{r['fid_judge']:.2f} |")
    if quality.get("error") or quality.get("fp8"):
        lines.append(f"\nfp8: {quality.get('error') or quality.get('fp8')}")
    return lines


def profile_lines(result: dict) -> list[str]:
    """One line per profiled HTTP run (bench/server_profile.py): threads' CPU, GIL, GPU, top functions."""
    lines = []
    for note in result.get("notes", []):
        for name, report in (note.get("http_load") or {}).items():
            profile = report.get("profile")
            if not profile:
                continue
            threads = ", ".join(f"{t['thread']} {t['core_share']:.2f}" for t in profile.get("threads", [])[:5])
            top = ", ".join(f"{f} {share:.2f}" for f, share in profile.get("top_self", [])[:6])
            gil = profile.get("gil_held_share")
            lines.append(
                f"- {note['case']} {note['system']} {name}: {report.get('images_per_s', 0):.1f} img/s under the profiler; "
                f"server process {profile.get('process_cores')} cores ({threads}); "
                f"GIL held {'not sampled' if gil is None else f'{gil:.2f}'} of the time; "
                f"GPU busy {profile.get('gpu_util_mean_pct', '?')}%; client CPU {report.get('client_cpu_s') or 0:.1f} s "
                f"of {report.get('wall_s', 0):.1f} s; sampler: {profile.get('sampler')}; top self ({'GIL holder' if gil else 'on-CPU'}): {top}"
            )
    return lines


def interval_quality_table(quality: dict) -> list[str]:
    """Judge accuracy of the bundled model guided at every step vs within each guidance interval."""
    lines = ["| guided | steps guided | UNet rows | split | caption acc | colour | shape | size | position | FID (judge) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in quality.get("records", []):
        label = str(r["model"]).rstrip("_")
        rows = quality.get("rows", {}).get(label, {})
        lines.append(f"| {label.replace('_', ' ')} | {rows.get('guided_steps', '?')} / {quality.get('steps')} | "
                     f"{rows.get('unet_rows_vs_all_steps', float('nan')):.2f}x | {r['split']} | {r['acc_caption']:.3f} | "
                     f"{r['acc_colour']:.3f} | {r['acc_shape']:.3f} | {r.get('acc_size', float('nan')):.3f} | "
                     f"{r.get('acc_position', float('nan')):.3f} | {r['fid_judge']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    paths = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        paths = sorted(RESULTS.glob("gpu_*.json")) + sorted(RESULTS.glob("cpu_guidance_interval_quality*.json"))
    for path in paths:
        result = load(path)
        if "card" not in result:  # bench/guidance_quality.py
            unet = f", UNet {result['unet']}" if result.get("unet") else ""
            print(f"### {path.name}: guidance interval on the bundled model ({result.get('device')}, DDIM "
                  f"{result.get('steps')}, w = {result.get('guidance')}, {result.get('captions')} captions per split, "
                  f"same seeds{unet})\n")
            print("\n".join(interval_quality_table(result)) + "\n")
            continue
        if "torch" not in result:  # bench/decoder_quality.py's gpu_*_decoder_quality.json: the README's decoder sections
            continue
        print(f"### {path.name}: {result['card']}, torch {result['torch']}, diffusers {result.get('diffusers', '?')}, "
              f"matmul ceiling {result.get('matmul_ceiling_tflops', '?')} TFLOP/s\n")
        if result["records"]:
            print("\n".join(case_table(result)) + "\n")
        engines = engine_table(result)
        if engines:
            print("Darkroom's variants: warm-up (compilation included), peak GPU memory, and the arithmetic rate at "
                  "the saturated in-process rate against the call's matmul ceiling (the exact pipeline's work per image):\n")
            print("\n".join(engines) + "\n")
        if result.get("levers"):
            print("Bare SD1.5 UNet (64x64 latents; rows = latent rows) and VAE decoder (vae-dec, 512x512; rows = images), "
                  "one lever at a time:\n")
            print("\n".join(lever_table(result)) + "\n")
        if result.get("fp8_quality"):
            print(f"fp8 quality cost on the bundled model (DDIM 25, w = 4, {result['fp8_quality'].get('captions')} captions "
                  "per split, same seeds):\n")
            print("\n".join(fp8_quality_table(result["fp8_quality"])) + "\n")
        if profile_lines(result):
            print("CPU profiles of the server process under HTTP load:\n")
            print("\n".join(profile_lines(result)) + "\n")
        if result.get("environment"):
            print(f"Optional packages in this call: {result['environment']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
