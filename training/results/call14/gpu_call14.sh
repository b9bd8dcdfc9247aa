#!/bin/bash
# Call 14 (GPU, prepared, not run yet): the one-step student distilled again, from the shipped teacher (issue 6):
#   the call-13 UNet since call 13 (0.912 / 0.883; the script imports whatever weights/bundled holds).
#   The shipped DMD + GAN student (weights/bundled_turbo, call 9) was distilled from the call-4 UNet: 0.84x / 0.87x
#   of that teacher, 0.71x / 0.75x of the call-13 teacher. It reads the same frozen text encoder, so DMD resumes
#   from it against the new teacher: call 9's best recipe (D1: lr 1e-5, fake lr 5e-5, DMD2's GAN term at weight
#   0.05), alone on the card; the fake score starts from the new teacher.
# The student UNet (17.9 MB) does not fit in one upload beside the wheels, so it travels in two calls:
#   bash training/results/call14/gpu_call14.sh prepare         # wheels, shard 2 + config   (carry .whl_t + those files)
#   bash training/results/call14/gpu_call14.sh launch WAIT_S   # shard 1, start D          (carry shard 1)
#   bash training/results/call14/gpu_call14.sh poll WAIT_S
#   bash training/results/call14/gpu_call14.sh finish          # export; students_eval: the teacher + D's student
# With the tree slim (tools/device_tree.sh slim), prepare carries .whl_t, weights/bundled_turbo/unet/config.json,
# .../diffusion_pytorch_model.safetensors.index.json and .../diffusion_pytorch_model-00002-of-00002.safetensors;
# launch carries .../diffusion_pytorch_model-00001-of-00002.safetensors (runs/up14 stays on the warm machine).
# Chain them within the machine's idle release (30 s). Env: DEVICE (cuda), TRAIN_S (900), CAPTIONS (512),
# BATCH (512), EVAL_ARGS, PYTHON. Checked on the CPU with DEVICE=cpu TRAIN_S=60 BATCH=4 CAPTIONS=8 (prepare's
# wheels are for the device's Python: without .whl_t it skips them).
set -u -o pipefail
MODE=$1
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
call_settings 14 900
UP=runs/up14; RUN=runs/run14d
case $MODE in
prepare) prepare_student $UP || exit 1 ;;
launch)
  stage_student_part1 $UP
  rm -rf $RUN runs/w14_run14d $E; mkdir -p $RUN $E/logs
  import_runs $E $RUN || exit 1
  start_pipeline "$0" $E "${2:-60}"
  ;;
pipeline)
  T0=$(date +%s)
  log "D for $TRAIN_S s"
  $PY -m training.distill_dmd --out $RUN --seconds "$TRAIN_S" --device "$DEVICE" --init-unet $UP --batch "$BATCH" \
    --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.05 > $E/logs/dmd.log 2>&1
  log "all done at $(( $(date +%s) - T0 )) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  poll_logs $E call14 3 "probe\|Error" dmd
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  export_and_eval $RUN runs/w14_run14d $E run14d dmd
  cp $RUN/dmd/state.json $E/state_run14d_dmd.json; cp $RUN/dmd/loss.png $E/loss_run14d_dmd.png
  pack $E e14; log done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
