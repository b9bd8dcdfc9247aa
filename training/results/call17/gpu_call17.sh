#!/bin/bash
# Call 17 (GPU; its first 4.5 minutes ran 2026-11-27 on an H200, record.md): one-step students distilled afresh from the shipped teacher (issue 6).
# Why afresh: the shipped one-step student keeps the relation-blind layouts of the call-4 teacher it came from
# (relations 0.185 direct / 0.486 reversed, chance 0.375; training/results/analysis/position_breakdown_turbo_shipped.md),
# and resuming it against the call-13 teacher did not move them (calls 14 and 16). Both runs start from the teacher's
# own UNet (weights/bundled/unet, in the slim tree: one upload), as DMD2 initialises its generator:
#   d: DMD with DMD2's GAN term (training.distill_dmd: lr 1e-5, fake lr 5e-5, GAN weight 0.05)
#   r: teacher-refined regression at s = 999 (training.distill_refine: online one-step distillation of the
#      teacher's DDIM-10 map, lr 5e-5)
# Side by side, so each gets about half the card (call 16: ~1 refine step/s each for three runs, 2.4 alone):
#   bash training/results/call17/gpu_call17.sh launch WAIT_S   # wheels, import, start d and r  (carry .whl_t)
#   bash training/results/call17/gpu_call17.sh poll WAIT_S     # chain polls within the 30 s idle release: no local
#                                                              # command between two calls
#   bash training/results/call17/gpu_call17.sh finish          # per run: export; students_eval (teacher + student)
# Env: DEVICE (cuda), TRAIN_S (1200), CAPTIONS (512), BATCH (512), EVAL_ARGS, PYTHON, RUNS ("d r"). Checked on the
# CPU with DEVICE=cpu TRAIN_S=60 BATCH=4 CAPTIONS=8 (without .whl_t, whose wheels are for the device's Python).
set -u -o pipefail
MODE=$1
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
call_settings 17 1200
RUNS=${RUNS:-d r}; TEACHER_UNET=weights/bundled/unet
stage_of() { case $1 in d) echo dmd ;; r) echo refine ;; esac; }
command_of() {  # RUN: the stage module and its recipe arguments
  case $1 in
  d) echo training.distill_dmd --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.05 ;;
  r) echo training.distill_refine --t-start 999 --teacher-steps 10 --lr 5e-5 ;;
  esac
}
case $MODE in
launch)
  install_wheels .whl_t || exit 1
  rm -rf runs/run17? runs/w17_run17? $E; mkdir -p $E/logs
  copies=(); for x in $RUNS; do copies+=("runs/run17$x"); done
  import_runs $E runs/run17_import "${copies[@]}" || exit 1
  start_pipeline "$0" $E "${2:-60}"
  ;;
pipeline)
  T0=$(date +%s)
  for x in $RUNS; do
    log "$x for $TRAIN_S s: $(command_of "$x")"
    # shellcheck disable=SC2046
    $PY -m $(command_of "$x") --out runs/run17$x --seconds "$TRAIN_S" --device "$DEVICE" --init-unet $TEACHER_UNET \
      --batch "$BATCH" > "$E/logs/$(stage_of "$x")_$x.log" 2>&1 &
  done
  wait
  log "all done at $(( $(date +%s) - T0 )) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  logs=(); for x in $RUNS; do logs+=("$(stage_of "$x")_$x"); done
  poll_logs $E call17 3 "probe\|Error" "${logs[@]}"
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  for x in $RUNS; do
    s=$(stage_of "$x")
    export_and_eval runs/run17$x runs/w17_run17$x $E run17$x "$s"
    cp runs/run17$x/$s/state.json $E/state_run17${x}_$s.json; cp runs/run17$x/$s/loss.png $E/loss_run17${x}_$s.png
  done
  pack $E e17; log done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
