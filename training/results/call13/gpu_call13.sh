#!/bin/bash
# Call 13 (GPU, run 2026-11-27 on an H200: U7 0.855 / 0.861, U8 0.912 / 0.883, U8 shipped): the call-12 UNet (U5) continued, two runs sharing the card (issue 5).
#   U5 stopped at 641 s of its 1,000 with its accuracy still rising (U4 0.801 -> U5 0.850 seen); left / right
#   relations are learnt (0.89-1.00), above / below not (0.25-0.63:
#   training/results/analysis/position_breakdown_shipped_call12.md).
#   U7 (run13u): U5's recipe for the full 1,000 s.
#   U8 (run13v): the same, but the extra draws go to above / below only, 6x (--boost-relations above below): the
#       grammar spreads vertical relations over three words (above, below, under), horizontal ones over two.
#   bash training/results/call13/gpu_call13.sh launch 75    # wheels, import, start both   (carry .whl_t)
#   bash training/results/call13/gpu_call13.sh poll 570
#   bash training/results/call13/gpu_call13.sh poll 345     # to the end of the 1,000 s
#   bash training/results/call13/gpu_call13.sh finish       # export; students_eval teacher rows; relation_swap
#   (short of device time: `stop MIN_S` in place of the second poll ends both runs right after their snapshots
#   at >= MIN_S s, as call 12 had to by hand; checked on the CPU: stop 60, then finish)
# Chain the calls within the machine's idle release (30 s); ~21 min held. Then, here, with E = the unpacked
# e13.tar.part*: python -m training.position_breakdown --unet E/weights_run13{u,v}/teacher_unet, and if one wins:
# install its UNet into weights/bundled/unet, re-hash the manifest, regenerate the golden image and thresholds
# (tests/training/test_bundled.py). Env as training/results/call11/gpu_call11.sh.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
unet_recipe 13 "$0"
# shellcheck disable=SC2206
UNET_ARGS=(--lr 1e-4 --freeze-text-encoder --relation-boost 3 --mirror-pairs --relation-high-t 0.75 $COMPILE --snapshot-s 120)
# shellcheck disable=SC2206,SC2034
UNET_ARGS_V=(--lr 1e-4 --freeze-text-encoder --relation-boost 6 --boost-relations above below --mirror-pairs --relation-high-t 0.75 $COMPILE --snapshot-s 120)
unet_call "$@"
