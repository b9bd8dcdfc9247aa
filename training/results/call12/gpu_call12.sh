#!/bin/bash
# Call 12 (GPU): call 11's U4 continued, two runs sharing the card (issue 5: relation words).
#   Call 11 (training/results/call11/): U4 (mirror pairs + --relation-high-t 0.75) took the teacher to 0.801 seen /
#   0.793 held-out (shipped 0.775 / 0.754) and the relation word now moves the layout in 0.45 of pairs (was 0.07);
#   U3 (mirror pairs alone) did not move. So the layout is learnt where the noise is high. Both runs start from U4,
#   installed in weights/bundled/unet:
#   U5 (run12u): U4's recipe again, 1,000 s more.
#   U6 (run12v): every relation scene's timestep from 500..999 (--relation-high-t 1.0) and relation scenes drawn 6x.
#   bash training/results/call12/gpu_call12.sh launch WAIT_S   # wheels, import, start both   (carry .whl_t)
#   bash training/results/call12/gpu_call12.sh poll WAIT_S
#   bash training/results/call12/gpu_call12.sh finish          # export; students_eval teacher rows; relation_swap
# Ran (H200, 2026-11-27): launch 75, poll 540, then both runs were stopped at their snapshots of 641 s (U5, step 5,660)
# and 636 s (U6, step 5,540) of the planned 1,000 s, to leave device time for the finish: the EMA of those snapshots
# was exported (learning rate then at ~45% of its cosine). U5 0.850 seen / 0.830 held-out, U6 0.836 / 0.816.
# Chain the calls within the machine's idle release (30 s). Env as training/results/call11/gpu_call11.sh.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
unet_recipe 12 "$0"
# shellcheck disable=SC2206
UNET_ARGS=(--lr 1e-4 --freeze-text-encoder --relation-boost 3 --mirror-pairs --relation-high-t 0.75 $COMPILE --snapshot-s 120)
# shellcheck disable=SC2206,SC2034
UNET_ARGS_V=(--lr 1e-4 --freeze-text-encoder --relation-boost 6 --mirror-pairs --relation-high-t 1.0 $COMPILE --snapshot-s 120)
unet_call "$@"
