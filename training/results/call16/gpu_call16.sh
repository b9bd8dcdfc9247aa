#!/bin/bash
# Call 16 (GPU; run 2026-11-27 on an H200, record.md: no run beat its start, none came back): the one-step student by teacher-refined regression (training.distill_refine, issue 6), three runs
# side by side on one card, each from the shipped DMD + GAN student (weights/bundled_turbo, 0.71x / 0.75x of the
# call-13 teacher) against the shipped teacher (whatever weights/bundled holds: call 13's U8, 0.912 / 0.883):
#   A: s = 999, 10 teacher steps, lr 5e-5 (online one-step distillation of the teacher's DDIM-10 map)
#   B: s = 880, 9 teacher steps, lr 3e-5
#   C: s = 780, 8 teacher steps, lr 3e-5
# On this machine's CPU (128 + 128 captions, training/results/call16/target_accuracy.md) the targets themselves, the
# teacher's re-solve of the shipped student's samples, score 0.859 / 0.836 at s = 800 and 0.93 / 0.883 at s = 999,
# against the student's own 0.625 / 0.664.
# The student UNet (17.9 MB) does not fit in one upload beside the wheels, so it travels in two calls:
#   bash training/results/call16/gpu_call16.sh prepare         # wheels, shard 2 + config   (carry .whl_t + those files)
#   bash training/results/call16/gpu_call16.sh launch WAIT_S   # shard 1, start A, B, C     (carry shard 1)
#   bash training/results/call16/gpu_call16.sh poll WAIT_S
#   bash training/results/call16/gpu_call16.sh finish          # per run: export; students_eval (teacher + student)
# Carry as call 14 (training/results/call14/gpu_call14.sh). Env: DEVICE (cuda), TRAIN_S (900), CAPTIONS (512),
# BATCH (512), EVAL_ARGS, PYTHON, RUNS ("a b c").
set -u -o pipefail
MODE=$1
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
call_settings 16 900
UP=runs/up16; RUNS=${RUNS:-a b c}
args_of() {  # RUN: training.distill_refine's recipe arguments of run a, b or c
  case $1 in
  a) echo --t-start 999 --teacher-steps 10 --lr 5e-5 ;;
  b) echo --t-start 880 --teacher-steps 9 --lr 3e-5 ;;
  c) echo --t-start 780 --teacher-steps 8 --lr 3e-5 ;;
  esac
}
case $MODE in
prepare) prepare_student $UP || exit 1 ;;
launch)
  stage_student_part1 $UP
  rm -rf runs/run16? runs/w16_run16? $E; mkdir -p $E/logs
  copies=(); for x in $RUNS; do [ "$x" = a ] || copies+=("runs/run16$x"); done
  import_runs $E runs/run16a "${copies[@]}" || exit 1
  start_pipeline "$0" $E "${2:-60}"
  ;;
pipeline)
  T0=$(date +%s)
  for x in $RUNS; do
    log "$x for $TRAIN_S s: $(args_of "$x")"
    # shellcheck disable=SC2046
    $PY -m training.distill_refine --out runs/run16$x --seconds "$TRAIN_S" --device "$DEVICE" --init-unet $UP \
      --batch "$BATCH" $(args_of "$x") > $E/logs/refine_$x.log 2>&1 &
  done
  wait
  log "all done at $(( $(date +%s) - T0 )) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  logs=(); for x in $RUNS; do logs+=("refine_$x"); done
  poll_logs $E call16 3 "probe\|Error" "${logs[@]}"
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  for x in $RUNS; do
    export_and_eval runs/run16$x runs/w16_run16$x $E run16$x refine
    cp runs/run16$x/refine/state.json $E/state_run16${x}_refine.json; cp runs/run16$x/refine/loss.png $E/loss_run16${x}_refine.png
  done
  pack $E e16; log done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
