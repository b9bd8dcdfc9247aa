#!/bin/bash
# Call 19 (GPU, issue 6; run on an NVIDIA H200 on 2026-11-27: record.md): call 18's run d (the real score at w = 6; 0.674 / 0.668 on
# 512 + 512 captions on CPU, a tie with the shipped student, training/results/call18/record.md) continued four
# ways side by side; the loop is launch-bound, so four runs share the card at little cost each:
#   a: the same (w = 6, lr 1e-5, fake lr 5e-5, GAN weight 0.05): more steps
#   b: the real score at w = 8
#   c: w = 6 with lr and fake lr 2x
#   d: w = 6 with the GAN term at 0.1 (shapes: run d draws them less sharply than the shipped student)
# Each starts from call 18's run-d EMA weights, carried as runs/init19/unet (ignored; a copy of
# call 18's e18.tar weights_run18d/bundled_turbo/unet).
#   bash training/results/call19/gpu_call19.sh prepare runs/whl18   # carry runs/whl18 (.whl_t + py-spy)
#   bash training/results/call19/gpu_call19.sh launch WAIT_S        # carry runs/init19 (the slim default tree beside it)
#   bash training/results/call19/gpu_call19.sh poll WAIT_S          # chained within the 30 s idle release
#   bash training/results/call19/gpu_call19.sh finish
# Env: as call_settings (TRAIN_S 1200, CAPTIONS 256 here: four evaluations), RUNS ("a b c d").
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
SCRIPT=$0; CAPTIONS=${CAPTIONS:-256}
call_settings 19 1200
RUNS=${RUNS:-a b c d}; INIT=runs/init19/unet
PROFILE_RUN=${PROFILE_RUN-}
run_stage() { echo dmd; }
run_command() {
  local base="training.distill_dmd --init-unet $INIT"
  case $1 in
  a) echo "$base --guidance 6 --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.05" ;;
  b) echo "$base --guidance 8 --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.05" ;;
  c) echo "$base --guidance 6 --lr 2e-5 --fake-lr 1e-4 --gan-weight 0.05" ;;
  d) echo "$base --guidance 6 --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.1" ;;
  esac
}
student_runs "$@"
