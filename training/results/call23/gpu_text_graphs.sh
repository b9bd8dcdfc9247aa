#!/bin/bash
# Call 23's last GPU call: the text encoder graphs (pipelines.accel.CudaGraphTextModel) on the card. Two uploads
# on one machine, within the 30 s idle release:
#   bash tools/device_tree.sh slim CODE_ONLY_REGEX (gpu_call21.sh's); carry runs/whl, runs/whl_t (pytest 9.2.0,
#   pluggy, iniconfig):       bash training/results/call23/gpu_text_graphs.sh wheels
#   unslim; slim (default tree); carry runs/turbo24 (the shipped bundled_turbo: unet, scheduler, model_index.json):
#                             bash training/results/call23/gpu_text_graphs.sh check
# check: the CUDA tests of tests/test_text_graphs.py, batch-1 latency of the teacher and the shipped one-step
# student with each lever added in turn (training.students_eval --latency-only: UNet graphs, + the decoder lever,
# + text encoder graphs), and bench/serve_smoke.py (moved there after call 23; the server on the teacher with its defaults, warm-up on).
set -u -o pipefail
export PYTHONPATH=$PWD/runs/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}; mkdir -p "$OUT"
case ${1:-} in
wheels)
  for w in runs/whl runs/whl_t; do
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site "$w"/*.whl || exit 1
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  ;;
check)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  python3 -m pytest -q -p no:cacheprovider tests/test_text_graphs.py 2>&1 | tail -n 4 | tee "$OUT/pytest.txt"
  mkdir -p runs/w24 && cp -r weights/bundled runs/turbo24/bundled_turbo runs/w24/
  for n in text_encoder tokenizer vae; do ln -sfn "../bundled/$n" "runs/w24/bundled_turbo/$n"; done
  python3 -m training.students_eval --weights runs/w24 --manifest weights_manifest.yaml --out "$OUT/latency" \
    --device cuda --models bundled-turbo --latency-only > "$OUT/latency.log" 2>&1 || tail -n 20 "$OUT/latency.log"
  python3 - "$OUT/latency/students_latency.json" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1]))["rows"]:
    print(row["model"], {k.removeprefix("latency_"): round(v * 1e3, 2) for k, v in row.items() if k.startswith("latency_")})
PY
  timeout 240 python3 -m bench.serve_smoke "$OUT/serve" 2>&1 | tail -n 3
  ;;
*) echo "usage: $0 wheels | check" >&2; exit 2 ;;
esac
