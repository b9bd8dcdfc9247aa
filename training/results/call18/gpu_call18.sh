#!/bin/bash
# Call 18 (GPU, issue 6): the call-17 DMD + GAN student (training/results/call17/record.md: 0.648 / 0.596 after 1,078
# steps from the teacher's UNet, in-run probes still rising ~0.03 per 500 steps) continued four ways side by side.
# Call 17 ran one student alone on the H200 at 0.8 steps/s with the card 29-51% busy, and two runs sharing it went
# almost as fast each: the loop is bound on the host, so side-by-side variants cost little. py-spy samples run a.
#   a: the same recipe (lr 1e-5, fake lr 5e-5, GAN weight 0.05): more steps
#   b: lr and fake lr 3x (3e-5 / 1.5e-4): faster, or unstable as from the ADD student in call 8
#   c: a + DMD's regression on the teacher's own guided DDIM samples (weight 0.25; a bank of the call-13 teacher)
#   d: a with the real score guided at w = 6 (the student is judged at the teacher's w = 4 adherence)
# Each starts from the call-17 student's EMA weights (carried as runs/init18/unet); its fake score and classifier
# start afresh (from the teacher) as in any DMD run.
#   bash training/results/call18/gpu_call18.sh prepare runs/whl18   # carry runs/whl18 (.whl_t + py-spy)
#   bash training/results/call18/gpu_call18.sh launch WAIT_S        # carry runs/init18 (the slim default tree beside it)
#   bash training/results/call18/gpu_call18.sh poll WAIT_S          # chained within the 30 s idle release
#   bash training/results/call18/gpu_call18.sh finish
# Env: as call_settings (TRAIN_S 900, CAPTIONS 256 here: four evaluations), RUNS ("a b c d").
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
SCRIPT=$0; CAPTIONS=${CAPTIONS:-256}
call_settings 18 900
RUNS=${RUNS:-a b c d}; INIT=runs/init18/unet
PROFILE_RUN=${PROFILE_RUN-a}; PROFILE_AT=${PROFILE_AT:-150}
run_stage() { echo dmd; }
run_command() {
  local base="training.distill_dmd --init-unet $INIT --gan-weight 0.05"
  case $1 in
  a) echo "$base --lr 1e-5 --fake-lr 5e-5" ;;
  b) echo "$base --lr 3e-5 --fake-lr 1.5e-4" ;;
  c) echo "$base --lr 1e-5 --fake-lr 5e-5 --ode-weight 0.25" ;;
  d) echo "$base --lr 1e-5 --fake-lr 5e-5 --guidance 6" ;;
  esac
}
student_runs "$@"
