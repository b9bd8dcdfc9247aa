#!/bin/bash
# Call 15 (GPU): the full `darkroom eval` grid of the shipped teacher, call 13's U8 (issue 5): w in {1, 2, 4, 7} x
# DDIM 10/25/50, DPM-Solver++ 10, PF-ODE Heun 25, reverse SDE 100, predictor-corrector 50, 512 seen + 512 held-out
# captions, fp16 on the card (server.cli eval), with its sample grids. (Rerun 2026-11-27 on an H200: 124 s with every cell on both caption sets; the first run, 76 s,
# ran the cells other than DDIM 25 on the seen captions only.) One call (~5 min on an H200), the tree slim
# (tools/device_tree.sh slim: code + weights/bundled + weights/judge), carry .whl_t:
#   bash training/results/call15/gpu_call15.sh
# Env: DEVICE (cuda), CAPTIONS (512), GRID_ARGS (server.cli eval's: --quick for a CPU check), PYTHON.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
call_settings 15 0
install_wheels .whl_t || exit 1
rm -rf "$E"; mkdir -p "$E/logs"
card | tee "$E/card.txt"
log "eval grid of the shipped bundled model"
# shellcheck disable=SC2086
$PY -m server.cli eval --model bundled --captions "$CAPTIONS" --out "$E/eval" --device "$DEVICE" ${GRID_ARGS:-} \
  > "$E/logs/eval_grid.log" 2>&1 || { tail -n 20 "$E/logs/eval_grid.log"; exit 1; }
log "grid done"; cat "$E/eval/eval.md"
pack "$E" e15
