#!/bin/bash
# Call 35 (GPU, issue 6; session 35): the GAN classifier made matching-aware (`distill_dmd --mismatch-weight`, new): the
# noised real latents under a hard negative of their caption (training.data.hard_negative: one object's shape, colour or
# stated size, or the side / relation, changed) count as fake too. Every call before read real vs fake alone, which
# the classifier told apart at 0.65-0.73 by what it could see, not by the caption; the student's failures are
# caption errors (three objects' shapes and sizes, relations). On this repo's CPU (`python -m training.gan_probe --kinds mid
# --mismatch W`, 300 steps of 32 on frozen teacher features; gan_probe_mismatch{0,1,3}.json here) DMD2's classifier ranks a
# real latent's hard-negative caption above its own (matching 0.40) and its logit ranks the student's samples the judge
# reads as wrong above the right ones (judge_auc 0.36): its term pulls away from the caption. With mismatch 1: 0.58 / 0.41;
# with 3: 0.69 / 0.55. From call 31's shipped student, call 31's recipe:
#   a: batch 512, lr 2e-5, lr warm-up 300, EMA 0.998 from the start, w = 6, fake lr 1e-4, GAN 0.05, mismatch 3, seed 29
#   b: the same with the GAN term at 0.15, seed 30
# Both on one card (GPUS="0"; kind nvidia-h200). The critic restarts from the teacher with 500 warm-up updates, in which
# the classifier learns the matching first. Start: runs/init35/unet = weights/bundled_turbo/unet (mkdir -p runs/init35
# && cp -r weights/bundled_turbo/unet runs/init35/; carry it); runs/whl from `bash tools/device_wheels.sh runs/whl`.
# Steps, each issued within the machine's 30 s idle release:
#   (code-only tree)    bash training/results/call35/gpu_call35.sh prepare runs/whl   # carry runs/whl
#   (default slim tree) GPUS="0" TRAIN_S=1000 bash training/results/call35/gpu_call35.sh launch 45   # carry runs/init35
#   poll 540; poll ...; finish (a, b and a's critic); PAIRED_SEED=135 PAIRED_CAPTIONS=512 ... paired (carry
#   weights/bundled_turbo only).
# The code-only tree: as call 34's (gpu_call34.sh). Seeds 91-127 and 133 are taken; this call's card pairing takes 135,
# CPU confirmations of a winner 137 and 139. Env: as call_settings (TRAIN_S 1250 unless set), RUNS ("a b"), GPUS ("0"),
# INIT, CRITIC, WARMUP (500 here), LR_WARMUP (300), MISMATCH (3).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
GPUS=${GPUS-0}
RUNS=${RUNS:-a b}
WARMUP=${WARMUP:-500}
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --lr-warmup ${LR_WARMUP:-300} --ema-from-init --mismatch-weight ${MISMATCH:-3}"
dmd_run_args() {
  case $1 in
  a) echo "--lr 2e-5 --gan-weight 0.05 --seed 29" ;;
  b) echo "--lr 2e-5 --gan-weight 0.15 --seed 30" ;;
  esac
}
dmd_four_runs 35 "$@"
