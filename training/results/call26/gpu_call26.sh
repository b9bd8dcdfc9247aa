#!/bin/bash
# Call 26 (GPU, issue 6; ran on a machine of four cards with GPUS="0 1 2 3", one run per card: record.md): four
# continuations of the one-step student, as call 25 (training/results/call25/record.md), with what call 25's analysis found:
# - every call so far restarted Adam, whose first update moves every weight by about lr (m / sqrt(v) = sign(g)):
#   one such update at lr 2e-5 took the shipped student from 0.766 to 0.723 on 256 CPU captions (at 2e-6: 0.762);
#   in-run probes fell after the first student step in every call (call 25: 0.922 -> 0.77-0.81 on 64 captions);
# - the EMA's warm-up weighted the first updates by 0.82, 0.73, ... so the exported EMA followed that kick instead
#   of averaging around the start;
# - weight averages of the runs gained (calls 21, 23) where the runs alone did not: the runs move around the start.
# So each run warms the student's lr up over 300 updates (distill_dmd --lr-warmup) and keeps the EMA at its full decay
# from the start (--ema-from-init):
#   a, b: the recipe (w = 6, lr 2e-5, fake lr 1e-4, GAN 0.05, batch 512), seeds 1, 2
#   c, d: the same at lr 1e-5, seeds 3, 4
# Placed a, c on card 0 and b, d on card 1 by default (GPUS). Start: runs/init26/unet (the shipped student, or the weights session 25
# installed); critic: run 25a's (runs/critic26 = e25.tar critic_run25a). Uploads and steps as call 25's recipe:
#   (slim code-only tree) bash training/results/call26/gpu_call26.sh prepare runs/whl   # carry runs/whl, runs/critic26
#   (default slim tree)   TRAIN_S=1250 bash training/results/call26/gpu_call26.sh launch 45   # carry runs/init26
#   poll 530; poll 480; finish (a, b and a's critic); rest (c, d and c's critic)
# Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1"), INIT, CRITIC, WARMUP (200), LR_WARMUP (300).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
DMD_HEAD="--guidance 6 --fake-lr 1e-4 --gan-weight 0.05"
dmd_run_args() {
  local own
  case $1 in
  a) own="--lr 2e-5 --seed 1" ;;
  b) own="--lr 2e-5 --seed 2" ;;
  c) own="--lr 1e-5 --seed 3" ;;
  d) own="--lr 1e-5 --seed 4" ;;
  esac
  echo "--lr-warmup ${LR_WARMUP:-300} --ema-from-init $own"
}
dmd_four_runs 26 "$@"
