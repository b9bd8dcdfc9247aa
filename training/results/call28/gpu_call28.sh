#!/bin/bash
# Call 28 (GPU, issue 6; prepared in session 27; run in session 28 on two cards, runs a and c only: record.md): four continuations of the one-step student, one per card
# on a machine of four (GPUS "0 1 2 3"), testing why every continuation since call 21 ended at or below its start.
# Calls 21-27 varied the objective (w, GAN weight, caption mix, classifier and judge features, the timesteps compared)
# and the optimizer's start. Session 27's CPU analysis (training.sample_flow, training/results/call27/sample_flow.md)
# moved the shipped student's samples themselves along DMD's gradient with run 26a's critic: in small steps (0.01) they
# rose from 0.727 to 0.81-0.84 judged on 128 captions; in steps of 0.05 along single draws they fell to 0.15. So the
# objective has room above the student, and what the runs did not vary is the noise of each update: one (t, noise)
# draw per sample, batch 512, lr 1e-5-2e-5 (the raw student sat 0.04-0.13 below its EMA in calls 26 and 27). The student
# regressed onto such moved samples on CPU took up at most a quarter of their gain, so its capacity may bind first;
# this call tests the update noise, the last untried axis of the runs themselves.
#   a: --draws 4 (each sample's gradient the mean of 4 draws: ~+40% per student update), lr 2e-5
#   b: --draws 4 at lr 5e-6 (smaller steps too)
#   c: batch 2048 (4x the samples per update, ~4x the cost), lr 2e-5, EMA decay 0.992 (the same horizon in samples),
#      lr warm-up 100
#   d: --draws 4 with 10 fake-score updates per student update (the fake score tracks the student twice as closely:
#      along a fixed critic the samples' gain stopped after ~0.07 of mean move)
# Every run: call 26's recipe otherwise (w = 6, fake lr 1e-4, GAN 0.05, lr warm-up 300, EMA from the start), t in
# [20, 980), run 26a's critic. --draws is new since the last GPU call: it was run on CPU (tests/test_distill_dmd.py),
# not yet compiled on a card; a run that fails leaves the others running.
# Start: runs/init28/unet (the shipped student: weights/bundled_turbo/unet); critic: run 26a's (runs/critic28 = e26.tar
# critic_run26a, as call 27's runs/critic27). Uploads and steps as call 27's recipe:
#   (slim code-only tree) bash training/results/call28/gpu_call28.sh prepare runs/whl   # carry runs/whl, runs/critic28
#   (default slim tree)   TRAIN_S=1250 bash training/results/call28/gpu_call28.sh launch 45   # carry runs/init28
#   poll 540; poll 470; finish (a, b and a's critic); rest (c, d and c's critic)
# Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1 2 3"), INIT, CRITIC, WARMUP (200), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
dmd_run_args() {
  case $1 in
  a) echo "--draws 4 --lr 2e-5 --seed 9" ;;
  b) echo "--draws 4 --lr 5e-6 --seed 10" ;;
  c) echo "--batch 2048 --lr 2e-5 --ema-decay 0.992 --lr-warmup 100 --seed 11" ;;
  d) echo "--draws 4 --fake-steps 10 --lr 2e-5 --seed 12" ;;
  esac
}
dmd_four_runs 28 "$@"
