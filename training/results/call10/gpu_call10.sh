#!/bin/bash
# Call 10: the relation lever for issue 5, alone on the card.
#   U2: the shipped teacher's UNet continued with the text encoder frozen and two-direction text
#       conditioning (training.text_unet --text-directions 2): the caption's encoding followed by its
#       word-reversed encoding. The encoder is causal, so in "A left of B" A's tokens never see the
#       relation; relations are at chance in the shipped teacher's samples and stayed there after
#       call 9's 3,042 more steps with one direction (training/results/analysis/position_breakdown*.md).
#       In the reversed pass a linear probe reads the relation at A's colour token at 1.00 (0.48 forward).
#       Relation captions drawn 3x as often, compiled, batch 1024, lr 1e-4.
# The one-step student run planned beside it (DMD + GAN, as call 9's D1) is dropped: call 9 moved it
# by about one standard error, and U2 had a third of the card in call 9's sharing. U2 gets it all.
#   bash training/results/call10/gpu_call10.sh launch WAIT_S   # wheels, import, start U2   (carry .whl_t)
#   bash training/results/call10/gpu_call10.sh poll WAIT_S
#   bash training/results/call10/gpu_call10.sh finish          # export; students_eval: U2 as the teacher row
# Each call must follow the last within the machine's idle release (30 s): chain them. Then, here:
# `python -m training.position_breakdown --unet E/weights_run10u/teacher_unet --text-directions 2` (relations),
# and if U2 wins: install its bundled/ (model_index.json carries darkroom_text_directions 2), re-hash the
# manifest, re-measure the CPU golden image and thresholds (tests/training/test_bundled.py).
# Env: DEVICE (cuda), TRAIN_S (1000), CAPTIONS (512), UNET_BATCH (1024), EVAL_ARGS,
# COMPILE (--compile; empty for the CPU check). Checked on the CPU with DEVICE=cpu TRAIN_S=60
# UNET_BATCH=4 CAPTIONS=8 COMPILE= (launch's wheels are for the device's Python: without .whl_t it skips them).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
unet_recipe 10 "$0"
# shellcheck disable=SC2206
UNET_ARGS=(--lr 1e-4 --freeze-text-encoder --text-directions 2 --relation-boost 3 $COMPILE --snapshot-s 120)
unet_call "$@"
