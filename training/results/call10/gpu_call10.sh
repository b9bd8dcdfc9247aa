#!/bin/bash
# Call 10 (GPU, prepared, not run yet): the relation lever for issue 5, beside one more one-step run.
#   U2: the shipped teacher's UNet continued with the text encoder frozen and two-direction text
#       conditioning (training.text_unet --text-directions 2): the caption's encoding followed by its
#       word-reversed encoding. The encoder is causal, so in "A left of B" A's tokens never see the
#       relation; relations are at chance in the shipped teacher's samples and stayed there after
#       call 9's 3,042 more steps with one direction (training/results/analysis/position_breakdown*.md).
#       In the reversed pass a linear probe reads the relation at A's colour token at 1.00 (0.48 forward).
#       Relation captions drawn 3x as often, compiled, batch 1024, lr 1e-4, alone on most of the card.
#   D1: the DMD one-step student (weights/bundled_turbo) resumed with DMD2's GAN term, as call 9's D1
#       (its teacher stays the shipped one-direction teacher: distill_dmd imports the shipped weights).
# The student UNet (17.9 MB) does not fit in one upload beside the wheels, so it travels in two calls:
#   bash training/results/call10/gpu_call10.sh prepare         # wheels, shard 2 + config   (carry .whl_t + those files)
#   bash training/results/call10/gpu_call10.sh launch WAIT_S   # shard 1, start U2 and D1   (carry shard 1)
#   bash training/results/call10/gpu_call10.sh poll WAIT_S
#   bash training/results/call10/gpu_call10.sh finish          # export; students_eval: U2's teacher + D1
# Each call must follow the last within the machine's idle release (30 s): chain them. Then, here:
# `python -m training.position_breakdown --unet E/weights_run10u/teacher_unet --text-directions 2` (relations),
# and if U2 wins: install its bundled/ (model_index.json carries darkroom_text_directions 2), re-hash the
# manifest, re-measure the CPU golden image and thresholds (tests/training/test_bundled.py).
# Env: DEVICE (cuda), TRAIN_S (600), CAPTIONS (512), BATCH (512), UNET_BATCH (1024), EVAL_ARGS,
# COMPILE (--compile; empty for the CPU check). Checked on the CPU with DEVICE=cpu TRAIN_S=60 BATCH=4
# UNET_BATCH=4 CAPTIONS=8 COMPILE= (prepare's wheels are for the device's Python: stage runs/up10 by hand).
set -u -o pipefail
MODE=$1
E=runs/e10; UP=runs/up10
DEVICE=${DEVICE:-cuda}; TRAIN_S=${TRAIN_S:-600}; CAPTIONS=${CAPTIONS:-512}
BATCH=${BATCH:-512}; UNET_BATCH=${UNET_BATCH:-1024}; EVAL_ARGS=${EVAL_ARGS:-}; COMPILE=${COMPILE---compile}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/runs/site:$PWD
PY=${PYTHON:-python3}
log() { echo "[call10 $(date +%H:%M:%S)] $*"; }
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
case $MODE in
prepare)
  install_wheels .whl_t || exit 1
  stage_student_part2 $UP; card; ls -l $UP
  ;;
launch)
  stage_student_part1 $UP
  rm -rf runs/run10* $E; mkdir -p runs/run10u $E/logs
  import_runs $E runs/run10u runs/run10d1 || exit 1
  start_pipeline "$0" $E "${2:-60}"
  ;;
pipeline)
  T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
  log "U2, D1 for $TRAIN_S s"
  # shellcheck disable=SC2086
  $PY -m training.text_unet --out runs/run10u --seconds "$TRAIN_S" --device "$DEVICE" --batch "$UNET_BATCH" --lr 1e-4 \
    --freeze-text-encoder --text-directions 2 --relation-boost 3 $COMPILE --snapshot-s 120 > $E/logs/unet.log 2>&1 &
  $PY -m training.distill_dmd --out runs/run10d1 --seconds "$TRAIN_S" --device "$DEVICE" --init-unet $UP --batch "$BATCH" \
    --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.05 > $E/logs/dmd_d1.log 2>&1 &
  wait
  log "all done at $(el) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  poll_logs $E call10 3 "probe\|snapshot\|Error" unet dmd_d1
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  cp -r runs/run10d1/dmd runs/run10u/dmd  # U2's teacher is evaluated beside D1 (students_eval's teacher row)
  export_and_eval runs/run10u runs/w10_run10u $E run10u
  mkdir -p $E/weights_run10u && cp -r runs/w10_run10u/bundled/unet $E/weights_run10u/teacher_unet
  cp runs/w10_run10u/bundled/model_index.json $E/weights_run10u/teacher_model_index.json
  for r in run10u/text_unet run10d1/dmd; do n=${r//\//_}; cp runs/$r/state.json $E/state_$n.json; cp runs/$r/loss.png $E/loss_$n.png; done
  pack $E e10; log done
  ;;
esac
