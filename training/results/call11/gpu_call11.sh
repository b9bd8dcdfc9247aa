#!/bin/bash
# Call 11 (GPU): mirror pairs for the relation words of issue 5, two runs sharing the card.
#   U3 (run11u): the shipped teacher's UNet continued with the text encoder frozen, one text direction (so the
#       one-step students, the ControlNet and the classifier stay valid), relation captions drawn 3x,
#       and training.text_unet --mirror-pairs: each relation scene beside its mirror image (the relation
#       word swapped, the layout mirrored) under the same noise, timestep and caption dropout.
#   Why: swapping the relation word leaves the shipped teacher's layout unchanged for 0.93 of seen
#   captions, and call 10's two-direction UNet's for 0.97 (training/results/analysis/relation_swap_*.md):
#   the layout ignores the word although the encoder carries it. In a mirror pair only that word tells
#   the two targets apart.
#   U4 (run11v): U3 and --relation-high-t 0.75: three in four relation scenes draw their timestep from 500..999,
#   where the layout is settled and the eps loss weights a wrong layout by the SNR (0.38 at t = 500, 0.04 at
#   t = 800), so the relation's share of the loss is small under a uniform draw.
#   bash training/results/call11/gpu_call11.sh launch WAIT_S   # wheels, import, start U3   (carry .whl_t)
#   bash training/results/call11/gpu_call11.sh poll WAIT_S
#   bash training/results/call11/gpu_call11.sh finish          # export; students_eval: U3 as the teacher row;
#                                                              # relation_swap on the card
# Ran (H200, 2026-11-27): launch 75, poll 570, poll 345, finish; both runs the full 1,000 s at ~11 steps/s each
# (two runs shared the card at the speed of one alone). U3 (9,469 steps) 0.771 seen / 0.775 held-out, U4 (9,474)
# 0.801 / 0.793 (the shipped call-4 UNet: 0.775 / 0.754). U4 was continued in call 12.
# Chain the calls within the machine's idle release (30 s). Then, here, with E = the unpacked e11.tar.part*:
#   E/relation_swap_run11{u,v}.md (finish ran training.relation_swap: does the word now set the layout?)
#   python -m training.position_breakdown --unet E/weights_run11{u,v}/teacher_unet
# and if U3 or U4 wins: install its UNet into weights/bundled/unet, re-hash the manifest, re-measure the CPU golden
# image and thresholds (tests/training/test_bundled.py); the students keep their teacher's encoder.
# Env: DEVICE (cuda), TRAIN_S (1000), CAPTIONS (512), SWAP_CAPTIONS (96), UNET_BATCH (1024), EVAL_ARGS, COMPILE (--compile; empty
# for the CPU check). Checked on the CPU with DEVICE=cpu TRAIN_S=60 UNET_BATCH=4 CAPTIONS=8 COMPILE= (without
# .whl_t: launch's wheels are for the device's Python).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
unet_recipe 11 "$0"
# shellcheck disable=SC2206
UNET_ARGS=(--lr 1e-4 --freeze-text-encoder --relation-boost 3 --mirror-pairs $COMPILE --snapshot-s 120)
# shellcheck disable=SC2034
UNET_ARGS_V=("${UNET_ARGS[@]}" --relation-high-t 0.75)
unet_call "$@"
