#!/bin/bash
# Call 34 (GPU, issue 6; prepared in session 33): call 31's recipe again, from the student it shipped.
# Session 34 was lent one-card machines only: it runs run a alone (GPUS="0" RUNS="a"), after gpu_latency34.sh's two
# steps on the same machine, and skips the card pairing: the run's EMA and its mean with the start are paired on the
# CPU instead (training.paired_compare, seeds 127, 129, 131).
# Call 31 (training/results/call31/record.md): four continuations of call 30's student, each alone within noise of
# its start on the card (-0.004 to +0.013), each one's mean with the start +0.003 to +0.033; the best of those means,
# start + run c, was confirmed on two fresh CPU sets (+0.016 +- 0.0066 over 3,072) and shipped. This call repeats the
# step from there with four new seeds:
#   a, b, c, d: batch 512, lr 2e-5, lr warm-up 300, EMA 0.998 from the start, w = 6, fake lr 1e-4, GAN 0.05, seeds 25-28
# The critic restarts from the teacher with 500 warm-up updates (a carried critic does not fit beside the start in the
# 64 MiB upload). Start: runs/init34/unet = weights/bundled_turbo/unet (mkdir -p runs/init34 && cp -r
# weights/bundled_turbo/unet runs/init34/; carry it); runs/whl from `bash tools/device_wheels.sh runs/whl`. Steps, on
# kind nvidia-h200-x4, each issued within the machine's 30 s idle release:
#   (code-only tree)    bash training/results/call34/gpu_call34.sh prepare runs/whl   # carry runs/whl
#   (default slim tree) GPUS="0 1 2 3" TRAIN_S=1000 bash training/results/call34/gpu_call34.sh launch 45   # carry runs/init34
#   poll 400; poll 520; finish (a, b and a's critic); PAIRED_SEED=127 PAIRED_CAPTIONS=512 ... paired (carry
#   weights/bundled_turbo only: with runs/init34 too the upload passes 64 MiB; ~280 s); rest (c and d).
# Call 31 held 1,481 s this way (prepare 50, launch 74, polls 920, finish 100, paired 279, rest 0.3).
# The code-only tree: bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|^server/|^weights_manifest.yaml$|
#   ^training/[a-z_]*\.(py|sh|json)$|^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$' (one line).
# A winner on the card is rebuilt here (training.soup) and paired on fresh seeds on the CPU before it is installed
# (seeds 91-125 and 133 are taken; this call's pairing on the card takes 127, the CPU confirmations 129 and 131).
# On two cards: GPUS="0 1" RUNS="a b". Env: as call_settings (TRAIN_S 1250 unless set), RUNS ("a b c d"), GPUS
# ("0 1 2 3"), INIT, CRITIC, WARMUP (500 here), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0 1 2 3}
WARMUP=${WARMUP:-500}
[ -f "${CRITIC:-runs/critic34}/fake_score.safetensors" ] && WARMUP=${WARMUP_CARRIED:-200}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05 --lr-warmup ${LR_WARMUP:-300} --ema-from-init"
dmd_run_args() {
  case $1 in
  a) echo "--lr 2e-5 --seed 25" ;;
  b) echo "--lr 2e-5 --seed 26" ;;
  c) echo "--lr 2e-5 --seed 27" ;;
  d) echo "--lr 2e-5 --seed 28" ;;
  esac
}
dmd_four_runs 34 "$@"
