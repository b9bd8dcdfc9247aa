#!/bin/bash
# Call 25 (GPU, issue 6): four continuations of the shipped one-step student on a machine of two cards, two runs per
# card, each from the shipped weights (call 23's s2a1) and run 23a's carried critic, with call 21's recipe (w = 6,
# lr 2e-5, fake lr 1e-4, GAN 0.05, batch 512, --compile reduce-overhead) and a seed of its own:
#   a, b: the recipe alone (seeds 1, 2): distinct ingredients of a weight average, as calls 21 and 23's soups were;
#   c, d: the recipe plus ADD's discriminator on the judge's frozen features of the decoded image
#         (distill_dmd --judge-gan-weight 0.1 / 0.3; seeds 3, 4). The student's three-object failures are shapes and
#         sizes (0.50 / 0.52 against the teacher's 0.93 / 0.95 on 96 CPU captions, call 25's analysis), which the
#         fake score's 4 x 4 mid block cannot see; the judge's 64-8 px maps can.
# The runs are placed a, c on card 0 and b, d on card 1 (GPUS), so each card holds one of each kind.
# No card evaluation at the end (each run's own final evaluation, 256 + 256 captions, is in its state.json): the
# decision is a paired count on this machine's CPU, as for calls 21 and 23. finish exports each run's final EMA and
# packs a and b (with run a's critic); `rest` packs c and d (with run c's critic and discriminator): four fp32 UNets
# and two critics do not fit one reply's 64 MiB.
# Uploads (<= 64 MiB each), as call 23:
#   bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|^server/|^weights_manifest.yaml$|^training/[a-z_]*\.(py|sh|json)$|^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$'
#   bash training/results/call25/gpu_call25.sh prepare runs/whl     # carry runs/whl, runs/critic25
#   bash tools/device_tree.sh unslim; bash tools/device_tree.sh slim   # (within the 30 s idle release)
#   bash training/results/call25/gpu_call25.sh launch 45             # carry runs/init25
#   bash training/results/call25/gpu_call25.sh poll WAIT_S           # chained within the 30 s idle release
#   bash training/results/call25/gpu_call25.sh stop a b c d 0        # if the budget asks for it
#   bash training/results/call25/gpu_call25.sh finish; ... rest
# Carried (ignored): runs/init25/unet (a copy of weights/bundled_turbo/unet), runs/critic25 (run 23a's critic_fp16,
# returned by call 23 as e23.tar critic_run23a).
# Env: as call_settings (TRAIN_S 1250), RUNS ("a b c d"), GPUS ("0 1"), INIT, CRITIC, WARMUP (200).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
DMD_HEAD="--guidance 6 --lr 2e-5 --fake-lr 1e-4 --gan-weight 0.05"
dmd_run_args() {
  case $1 in
  a) echo "--seed 1" ;;
  b) echo "--seed 2" ;;
  c) echo "--seed 3 --judge-gan-weight 0.1" ;;
  d) echo "--seed 4 --judge-gan-weight 0.3" ;;
  esac
}
dmd_four_runs 25 "$@"
