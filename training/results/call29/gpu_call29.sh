#!/bin/bash
# Call 29 (GPU, issue 6; prepared in session 28, run in session 29 on four cards: record.md): is the one-step student's
# capacity what holds it?
# Calls 21-28 found the student at a fixed point of DMD + GAN: no setting of the objective (w, GAN weight, caption mix,
# classifier and judge features, the timesteps compared) nor of the updates (lr, restarts, EMA, four draws per sample,
# batch 2048) moved its accuracy beyond ~0.02, while its own samples moved along DMD's gradient read 0.06-0.11 better
# (session 27's sample flow) and the student regressed onto such samples took up a quarter of that at most. This call
# grows the student (training.grow: more transformer layers in the UNet's 4x4 levels, which start adding exactly zero,
# so every run starts from the shipped student's function) and trains grown and plain students side by side:
#   a: grown, 3 layers per 4x4 attention (1 1 3: 12.9M parameters against 8.9M), batch 2048, lr 4e-5
#   b: grown, 2 layers (1 1 2), batch 2048, lr 4e-5
#   c: the plain student, batch 2048, lr 4e-5 (call 28's run c at twice its lr): a's control
#   d: grown (1 1 3), call 26's recipe (batch 512, lr 2e-5, lr warm-up 300)
# Batch 2048 (call 28, run c) brought the raw weights level with their EMA; lr 4e-5 gives each sample twice its step.
# Every run: w = 6, fake lr 1e-4, GAN 0.05, t in [20, 980), --ema-from-init, run 26a's critic with 200 warm-up updates.
# Cost: the grown UNet (1 1 3) took 36% longer than the shipped one at batch 1 on this repo's CPU (1 1 2: 18%), so a
# grown student that wins must buy its latency back elsewhere; this call asks whether capacity moves accuracy at all.
# On a machine of two cards: RUNS="a c" GPUS="0 1" (growth alone differs between them).
# Checked in session 28 on an H200 (eager, not compiled): a DMD run from the teacher's UNet grown to 1 1 3 recorded its
# architecture, resumed into it and took 40 student updates of 256 (matching 1.41, classifier 0.78 accurate).
# Start: runs/init29/unet (the shipped student: weights/bundled_turbo/unet); the grown students are grown from it on
# the card at launch (seed 0: the same each call; a grown fp16 UNet does not fit one upload beside the slim tree);
# critic: run 26a's (runs/critic29 = runs/critic28). Uploads and steps as call 28's record:
#   (slim code-only tree) bash training/results/call29/gpu_call29.sh prepare runs/whl   # carry runs/whl, runs/critic29
#   (default slim tree)   TRAIN_S=1400 bash training/results/call29/gpu_call29.sh launch 45   # carry runs/init29
#   poll 400; poll 545; finish (a, b and a's critic); rest (c, d and c's critic; four runs only)
# Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1 2 3"), INIT, CRITIC, WARMUP (200), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
INIT=${INIT:-runs/init29/unet}
if [ "${1:-}" = launch ]; then
  call_settings 29 1250  # PY and PYTHONPATH (runs/site) as dmd_four_runs sets them
  for layers in "1 1 3" "1 1 2"; do
    grown=runs/init29/grown${layers// /}
    # shellcheck disable=SC2086
    [ -d "$grown" ] || $PY -m training.grow "$INIT" "$grown" --transformer-layers $layers --seed 0 || exit 1
  done
fi
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
LARGE="--batch 2048 --lr 4e-5 --ema-decay 0.992 --lr-warmup 100"
dmd_run_args() {
  case $1 in
  a) echo "--init-unet runs/init29/grown113 $LARGE --seed 13" ;;
  b) echo "--init-unet runs/init29/grown112 $LARGE --seed 14" ;;
  c) echo "$LARGE --seed 15" ;;
  d) echo "--init-unet runs/init29/grown113 --lr 2e-5 --seed 16" ;;
  esac
}
dmd_four_runs 29 "$@"
