#!/bin/bash
# Call 24's GPU checks (this session's second and third device calls; bench run 13 came first): the server as
# deployed on a GPU, the text encoder and decoder levers, the tiny decoder. Two uploads on one machine, within the
# 30 s idle release:
#   bash tools/device_tree.sh slim CODE_ONLY_REGEX (gpu_call21.sh's, plus ^tests/); carry runs/whl, runs/whl_t:
#                             bash training/results/call24/gpu_checks.sh wheels
#     installs the wheels into runs/site, then the CUDA tests: tests/test_text_graphs.py, tests/pipelines/test_accel.py,
#     tests/test_tiny_decoder_api.py (the decoder lever around AutoencoderTiny's decoder, graphs and compile)
#   unslim; slim with the default regex plus weights/bundled_tiny_vae; carry runs/turbo24 (the shipped bundled_turbo):
#                             bash training/results/call24/gpu_checks.sh check
#     the bundled tiny decoder trained on the card (training/tiny_decoder.py, TINY_S seconds) and its quality cost
#     (bench/tiny_decoder_quality.py), students_eval --latency-only (teacher and one-step student at batch 1, each lever added in turn, last the
#     decoder as CUDA graphs instead of compiled), then bench/serve_smoke.py (darkroom serve with its CUDA defaults).
set -u -o pipefail
export PYTHONPATH=$PWD/runs/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}; mkdir -p "$OUT"
case ${1:-} in
wheels)
  for w in runs/whl runs/whl_t; do
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site "$w"/*.whl || exit 1
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  python3 -m pytest -q -p no:cacheprovider -rs tests/test_text_graphs.py tests/pipelines/test_accel.py \
    tests/test_tiny_decoder_api.py 2>&1 | tail -n 12 | tee "$OUT/pytest.txt"
  ;;
check)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  # the bundled model's tiny decoder, trained here (a CPU run reached only a few hundred steps), exported fp16
  python3 -m training.tiny_decoder --out runs/tvae --seconds "${TINY_S:-150}" --device cuda --export weights/bundled_tiny_vae \
    > "$OUT/tiny_decoder.log" 2>&1 || tail -n 20 "$OUT/tiny_decoder.log"
  tail -n 2 "$OUT/tiny_decoder.log"; cp -r weights/bundled_tiny_vae "$OUT/"
  mkdir -p runs/w24 && cp -r weights/bundled weights/judge weights/bundled_tiny_vae runs/turbo24/bundled_turbo runs/w24/
  for n in text_encoder tokenizer vae; do ln -sfn "../bundled/$n" "runs/w24/bundled_turbo/$n"; done
  DARKROOM_WEIGHTS_ROOT=runs/w24 python3 -m bench.tiny_decoder_quality --device cuda --out "$OUT/gpu_tiny_decoder_quality.json" \
    > "$OUT/tiny_quality.log" 2>&1 || tail -n 20 "$OUT/tiny_quality.log"
  tail -n 8 "$OUT/tiny_quality.log"
  python3 -m training.students_eval --weights runs/w24 --manifest weights_manifest.yaml --out "$OUT/latency" \
    --device cuda --models bundled-turbo --latency-only > "$OUT/latency.log" 2>&1 || tail -n 20 "$OUT/latency.log"
  python3 - "$OUT/latency/students_latency.json" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1]))["rows"]:
    print(row["model"], {k.removeprefix("latency_"): round(v * 1e3, 2) for k, v in row.items() if k.startswith("latency_")})
    print(row["model"], {k: round(v, 1) for k, v in row.items() if k.startswith("speedup_")})
PY
  timeout 300 python3 -m bench.serve_smoke "$OUT/serve" 2>&1 | tail -n 3
  ;;
*) echo "usage: $0 wheels | check" >&2; exit 2 ;;
esac
