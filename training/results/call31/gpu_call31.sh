#!/bin/bash
# Call 31 (GPU, issue 6; prepared in session 31, run in session 33 as written: record.md): four plain continuations of the shipped student, and
# their means with it. Call 30 (training/results/call30/record.md) found the output anchor harmful, but its control,
# call 26's recipe with the critic restarted from the teacher, moved the student by +0.015 on its own, and the mean of
# the start and that run gained +0.027 +- 0.010 on 1,536 fresh captions (shipped since). Calls 21, 23 and 25 gained the
# same way: a continuation alone ties with its start, its mean with the start wins. This call repeats call 30's control
# four times from the new student, with four seeds, to see whether the step repeats and whether a mean of several runs
# adds to it:
#   a, b, c, d: batch 512, lr 2e-5, lr warm-up 300, EMA 0.998 from the start, w = 6, fake lr 1e-4, GAN 0.05, seeds 21-24
# The critic restarts from the teacher with 500 warm-up updates, as in call 30 (CRITIC=runs/critic31, when carried: 200).
# Start: runs/init31/unet = weights/bundled_turbo/unet (mkdir -p runs/init31 && cp -r weights/bundled_turbo/unet
# runs/init31/; carry it); runs/whl from `bash tools/device_wheels.sh runs/whl`. Steps, on kind nvidia-h200-x4:
#   (code-only tree)    bash training/results/call31/gpu_call31.sh prepare runs/whl   # carry runs/whl
#   (default slim tree) TRAIN_S=1000 bash training/results/call31/gpu_call31.sh launch 45   # carry runs/init31
#   poll 400; poll 520; finish (a, b and a's critic); PAIRED_SEED=121 PAIRED_CAPTIONS=512 ... paired (each run and its mean with the
#   start, and the mean of the start and all four, against the start on the card: ~3 minutes); rest (c and d);
#   latency (the decoder levers' CUDA tests, then the shipped student's and the teacher's latency on the card, each lever in
#   turn, the new compiled-and-graphed decoder last: no card has measured call 30's student or that lever yet)
# TRAIN_S=1000 leaves room for paired (~170 s) and latency (~200 s) in the session's 1,800 s: call 30 held ~1,580 s at
# 1250 without them (and ~110 s more in two ad hoc calls). Each run gets ~640 s of student updates (~2,100 at 3.3/s).
# The code-only tree: bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|^server/|^weights_manifest.yaml$|
#   ^training/[a-z_]*\.(py|sh|json)$|^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$' (one line).
# A winner on the card is rebuilt here (training.soup) and paired on a fresh seed on the CPU before it is installed
# (seeds 91-117 are taken; this call's pairing on the card takes 121 and its held-out twin 122).
# On two cards: GPUS="0 1". Env: as call_settings (TRAIN_S 1250 unless set), RUNS ("a b c d"), GPUS ("0 1 2 3"), INIT, CRITIC,
# WARMUP (500 here), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
WARMUP=${WARMUP:-500}
[ -f "${CRITIC:-runs/critic31}/fake_score.safetensors" ] && WARMUP=${WARMUP_CARRIED:-200}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
dmd_run_args() {
  case $1 in
  a) echo "--lr 2e-5 --seed 21" ;;
  b) echo "--lr 2e-5 --seed 22" ;;
  c) echo "--lr 2e-5 --seed 23" ;;
  d) echo "--lr 2e-5 --seed 24" ;;
  esac
}
dmd_four_runs 31 "$@"
