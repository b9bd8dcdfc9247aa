#!/bin/bash
# Call 28 (GPU, issue 6; prepared in session 27, not run yet): four continuations of the one-step student, one per card
# on a machine of four (GPUS "0 1 2 3"), testing why every continuation since call 21 ended at or below its start.
# Calls 21-27 varied the objective (w, GAN weight, caption mix, classifier and judge features, the timesteps compared)
# and the optimizer's start; what they never varied is the noise of each student update and the fake score's tracking:
# every run drew batch 512, took 5 fake-score updates per student update, and started from the previous call's critic.
# The raw student sat 0.04-0.13 below its EMA in calls 26 and 27, a sign of updates dominated by their noise.
#   a: batch 2048 (4x the samples per update), lr 2e-5, EMA decay 0.992 (the same horizon in samples), lr warm-up 100
#   b: as a at lr 4e-5
#   c: batch 512, 10 fake-score updates per student update (the fake score tracks the student twice as closely)
#   d: batch 512, a fresh fake score (from the teacher, not run 26a's critic; FRESH_CRITIC=d), 600 critic warm-up updates
# Every run: call 26's recipe otherwise (w = 6, fake lr 1e-4, GAN 0.05, lr warm-up, EMA from the start), t in [20, 980).
# Start: runs/init28/unet (the shipped student: weights/bundled_turbo/unet); critic: run 26a's (runs/critic28 = e26.tar
# critic_run26a, as call 27's runs/critic27). Uploads and steps as call 27's recipe:
#   (slim code-only tree) bash training/results/call28/gpu_call28.sh prepare runs/whl   # carry runs/whl, runs/critic28
#   (default slim tree)   TRAIN_S=1250 bash training/results/call28/gpu_call28.sh launch 45   # carry runs/init28
#   poll 540; poll 470; finish (a, b and a's critic); rest (c, d and c's critic)
# Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1 2 3"), INIT, CRITIC, WARMUP (200), LR_WARMUP (300),
# FRESH_CRITIC ("d").
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
FRESH_CRITIC=${FRESH_CRITIC-d}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
dmd_run_args() {
  case $1 in
  a) echo "--batch 2048 --lr 2e-5 --ema-decay 0.992 --lr-warmup 100 --seed 9" ;;
  b) echo "--batch 2048 --lr 4e-5 --ema-decay 0.992 --lr-warmup 100 --seed 10" ;;
  c) echo "--fake-steps 10 --lr 2e-5 --seed 11" ;;
  d) echo "--critic-warmup 600 --lr 2e-5 --seed 12" ;;
  esac
}
dmd_four_runs 28 "$@"
