#!/bin/bash
# Call 27 (GPU, issue 6; prepared in session 26, not run yet): four continuations of the one-step student, one per card
# on a machine of four (GPUS "0 1 2 3"; on two cards set GPUS="0 1"), testing the one setting calls 8-26 never varied:
# the timesteps at which the student's noised sample is scored by the teacher and the fake score (distill_dmd --t-range;
# DMD's 20-980 so far). The student's remaining failures are outlines and sizes of small objects (three objects: shape
# 0.50, size 0.52 against the teacher's 0.93 / 0.95), detail that only the low-noise comparisons resolve; call 26 showed
# the recipe at 20-980 at a fixed point (training/results/call26/record.md). Every run keeps call 26's lr warm-up (300)
# and EMA from the start, call 21's recipe (w = 6, fake lr 1e-4, GAN 0.05, batch 512):
#   a: t in [20, 500), lr 2e-5, seed 5       b: t in [20, 250), lr 2e-5, seed 6
#   c: t in [500, 980), lr 2e-5, seed 7 (the complement: high noise only)   d: t in [20, 500), lr 1e-5, seed 8
# Start: runs/init27/unet (the shipped student: weights/bundled_turbo/unet); critic: run 26a's (runs/critic27 = e26.tar
# critic_run26a). Uploads and steps as call 26's recipe:
#   (slim code-only tree) bash training/results/call27/gpu_call27.sh prepare runs/whl   # carry runs/whl, runs/critic27
#   (default slim tree)   TRAIN_S=1250 bash training/results/call27/gpu_call27.sh launch 45   # carry runs/init27
#   poll 540; poll 470; finish (a, b and a's critic); rest (c, d and c's critic)
# Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1 2 3"), INIT, CRITIC, WARMUP (200), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
dmd_run_args() {
  case $1 in
  a) echo "--t-range 20 500 --lr 2e-5 --seed 5" ;;
  b) echo "--t-range 20 250 --lr 2e-5 --seed 6" ;;
  c) echo "--t-range 500 980 --lr 2e-5 --seed 7" ;;
  d) echo "--t-range 20 500 --lr 1e-5 --seed 8" ;;
  esac
}
dmd_four_runs 27 "$@"
