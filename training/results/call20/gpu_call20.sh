#!/bin/bash
# Call 20 (GPU, issue 6; prepared, not yet run): the DMD loop compiled. Calls 18-19 showed DMD from this student
# stopped moving under every single-knob change (training/results/call19/record.md); DMD2's remaining difference
# is tens of thousands of steps, and the loop is launch-bound alone (0.8 steps/s eager, card 29-51% busy, call 17).
# distill_dmd --compile (the student, teacher and fake-score passes; the classifier's mid-block features are an
# explicit output since call 19, the caption embeddings computed once) is checked on CPU only:
#   a: --compile reduce-overhead (CUDA graphs through torch.compile)
#   b: --compile default (fusion only): the fallback if a fails, and the rate without graphs
# Both from call 19's run c (0.678 / 0.670 on 512 + 512 captions on CPU), carried as runs/init20/unet (ignored;
# call 19's weights_run19c/bundled_turbo/unet), with w = 6, lr 2e-5 (run c's recipe). Compare each run's steps per
# second (its probe lines: step and seconds) with call 17's 0.8 alone; if a compiled run is several times faster,
# the next call runs it alone for the whole budget.
#   bash training/results/call20/gpu_call20.sh prepare runs/whl18   # carry runs/whl18 (.whl_t + py-spy)
#   bash training/results/call20/gpu_call20.sh launch WAIT_S        # carry runs/init20 (the slim default tree beside it)
#   bash training/results/call20/gpu_call20.sh poll WAIT_S          # chained within the 30 s idle release
#   bash training/results/call20/gpu_call20.sh finish
# Env: as call_settings (TRAIN_S 1100, CAPTIONS 128 here), RUNS ("a b"; "a" alone once a is known to work), INIT.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
SCRIPT=$0; CAPTIONS=${CAPTIONS:-128}
call_settings 20 1100
RUNS=${RUNS:-a b}; INIT=${INIT:-runs/init20/unet}
PROFILE_RUN=${PROFILE_RUN-}
run_stage() { echo dmd; }
run_command() {
  local base="training.distill_dmd --init-unet $INIT --guidance 6 --lr 2e-5 --fake-lr 1e-4 --gan-weight 0.05"
  case $1 in
  a) echo "$base --compile reduce-overhead" ;;
  b) echo "$base --compile default" ;;
  esac
}
student_runs "$@"
