#!/bin/bash
# Call 24's batch-invariance check on the card: bench/serve_smoke.py twice on the bundled model with its CUDA defaults,
# once as is and once with DARKROOM_BATCH_INVARIANT=true (every UNet call on 2 x max_batch rows, every decode on
# max_batch). Two uploads on one machine, within the 30 s idle release:
#   code-only tree (gpu_checks.sh's regex); carry runs/whl:   bash training/results/call24/gpu_invariance.sh wheels
#   default slim tree:                                         bash training/results/call24/gpu_invariance.sh run
set -u -o pipefail
export PYTHONPATH=$PWD/runs/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}; mkdir -p "$OUT"
case ${1:-} in
wheels)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site runs/whl/*.whl || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  ;;
run)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  for mode in plain invariant; do
    flag=false; [ $mode = invariant ] && flag=true
    DARKROOM_BATCH_INVARIANT=$flag timeout 280 python3 -m bench.serve_smoke "runs/smoke_$mode" > "$OUT/smoke_$mode.log" 2>&1
    echo "$mode: $(tail -n 1 "$OUT/smoke_$mode.log")"
  done
  ;;
*) echo "usage: $0 wheels | run" >&2; exit 2 ;;
esac
