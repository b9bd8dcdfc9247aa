#!/bin/bash
# Call 30 (GPU, issue 6; prepared in session 30, not yet run): does an output anchor let DMD move the one-step student?
# Sessions 29-30 found on the CPU why the student sits at a fixed point of DMD + GAN (calls 19-29): an update that pulls
# its samples toward better targets moves them as far off their useful direction as along it, and the off-line part
# costs what the useful part gains. Session 30 (record.md beside this script) regressed the shipped student onto the
# teacher's re-solves of its own samples (judged 0.873 against the samples' 0.781): plainly it gained nothing; with an
# anchor (a penalty on the change of its outputs at other (noise, caption) pairs since a reference copy) the off-line
# part shrank tenfold. distill_dmd --anchor-weight W --anchor-every K adds that anchor to every student update; this
# call runs three weights beside a control on four cards:
#   a: W = 3, K = 32      b: W = 10, K = 32      c: W = 30, K = 32      d: no anchor (the control)
# Every run: call 26's recipe from the shipped student (batch 512, lr 2e-5, lr warm-up 300, EMA 0.998 from the start),
# w = 6, fake lr 1e-4, GAN 0.05, t in [20, 980). The anchors double the student's pass (2 x 512 rows) and add one
# pass of the reference. DMD's per-element generator gradient has an RMS of ~1.6 (call 29's runs); at an output drift
# of RMS 0.07 the anchor's is 2 W x 0.07: W = 3, 10, 30 pull at ~0.25x, 0.9x and 2.6x of it.
# The critic: run 26a's was not in session 30's checkout, so each run restarts it from the teacher with 500 warm-up
# updates (CRITIC=runs/critic30 when carried: then 200 are enough, as in calls 26-29).
# Start: runs/init30/unet = weights/bundled_turbo/unet (mkdir -p runs/init30 && cp -r weights/bundled_turbo/unet
# runs/init30/; carry it); runs/whl from `bash tools/device_wheels.sh runs/whl`. Uploads and steps as call 29's record:
#   (slim code-only tree) bash training/results/call30/gpu_call30.sh prepare runs/whl   # carry runs/whl
#   (default slim tree)   TRAIN_S=1400 bash training/results/call30/gpu_call30.sh launch 45   # carry runs/init30
#   poll 400; poll 545; finish (a, b and a's critic); rest (c, d and c's critic)
#   paired (carry weights/bundled_turbo): each final EMA against the start on 768 + 768 captions, paired, on the card
# On two cards: RUNS="b d" GPUS="0 1". Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1 2 3"),
# INIT, CRITIC, WARMUP (500 here), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
WARMUP=${WARMUP:-500}
[ -f "${CRITIC:-runs/critic30}/fake_score.safetensors" ] && WARMUP=${WARMUP_CARRIED:-200}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
dmd_run_args() {
  case $1 in
  a) echo "--lr 2e-5 --anchor-weight 3 --anchor-every 32 --seed 17" ;;
  b) echo "--lr 2e-5 --anchor-weight 10 --anchor-every 32 --seed 18" ;;
  c) echo "--lr 2e-5 --anchor-weight 30 --anchor-every 32 --seed 19" ;;
  d) echo "--lr 2e-5 --seed 20" ;;
  esac
}
dmd_four_runs 30 "$@"
