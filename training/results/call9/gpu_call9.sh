#!/bin/bash
# Call 9 (GPU): three runs side by side on one card, from the shipped weights.
# Ran on 2026-11-26 (NVIDIA H200) with TRAIN_S=600: prepare, launch 480, finish. Results here:
#   students_run9u/  U's teacher (0.770 / 0.746, no gain over the shipped 0.775 / 0.754) beside D1's student
#                    (0.650 / 0.658, FID 0.22: shipped as weights/bundled_turbo)
#   students_run9d2/ the shipped teacher (0.775 / 0.754) beside D2's student (0.641 / 0.648, FID 0.46)
#   state_*.json, loss_*.png, logs/ (U: 3,042 steps; D1: 315; D2: 488; the card shared by all three).
#   U:  the teacher's UNet continued with the text encoder frozen (training.text_unet
#       --freeze-text-encoder, compiled, batch 1024): issue 5's seen accuracy is bound by the UNet
#       (positions 0.654 in samples vs 0.935 on reconstructions); the frozen encoder keeps the
#       students, ControlNet and classifier valid. Captions with a two-object relation are drawn 3x as
#       often: the shipped UNet draws relations at chance (training/results/analysis/position_breakdown.md).
#   D1: the DMD one-step student (weights/bundled_turbo) resumed with DMD2's GAN term
#       (--gan-weight 0.05: a classifier on the fake score UNet's mid-block features).
#   D2: the same student, DMD alone, lr 5e-6, EMA 0.999 (a longer horizon than call 8's).
# The student UNet (17.9 MB) does not fit in one upload beside the wheels, so it travels in two calls:
#   bash training/results/call9/gpu_call9.sh prepare         # wheels, shard 2 + config   (carry .whl_t + those files)
#   bash training/results/call9/gpu_call9.sh launch WAIT_S   # shard 1, start U, D1, D2   (carry shard 1)
#   bash training/results/call9/gpu_call9.sh poll WAIT_S
#   bash training/results/call9/gpu_call9.sh finish          # export; students_eval: U's teacher + D1, then D2
# Each call must follow the last within the machine's idle release (30 s): chain them.
# Env: DEVICE (cuda), TRAIN_S (720), CAPTIONS (512), BATCH (512), UNET_BATCH (1024), EVAL_ARGS,
# COMPILE (--compile; empty for the CPU check). Checked on the CPU with DEVICE=cpu TRAIN_S=90 BATCH=4
# UNET_BATCH=4 CAPTIONS=8 COMPILE= (prepare's wheels are for the device's Python: copy runs/up9 by hand).
set -u -o pipefail
MODE=$1
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
call_settings 9 720
UP=runs/up9
case $MODE in
prepare) prepare_student $UP || exit 1 ;;
launch)
  stage_student_part1 $UP
  rm -rf runs/run9* $E; mkdir -p runs/run9u $E/logs
  import_runs $E runs/run9u runs/run9d1 runs/run9d2 || exit 1
  start_pipeline "$0" $E "${2:-60}"
  ;;
pipeline)
  T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
  log "U, D1, D2 for $TRAIN_S s"
  # shellcheck disable=SC2086
  $PY -m training.text_unet --out runs/run9u --seconds "$TRAIN_S" --device "$DEVICE" --batch "$UNET_BATCH" --lr 1e-4 \
    --freeze-text-encoder --relation-boost 3 $COMPILE --snapshot-s 120 > $E/logs/unet.log 2>&1 &
  DMD=(--seconds "$TRAIN_S" --device "$DEVICE" --init-unet $UP --batch "$BATCH")
  $PY -m training.distill_dmd --out runs/run9d1 "${DMD[@]}" --lr 1e-5 --fake-lr 5e-5 --gan-weight 0.05 > $E/logs/dmd_d1.log 2>&1 &
  $PY -m training.distill_dmd --out runs/run9d2 "${DMD[@]}" --lr 5e-6 --fake-lr 5e-5 --ema-decay 0.999 > $E/logs/dmd_d2.log 2>&1 &
  wait
  log "all done at $(el) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  poll_logs $E call9 3 "probe\|snapshot\|Error" unet dmd_d1 dmd_d2
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  cp -r runs/run9d1/dmd runs/run9u/dmd  # U's teacher is evaluated beside D1 (students_eval's teacher row)
  for name in run9u run9d2; do
    export_and_eval runs/$name runs/w9_$name $E $name || continue
  done
  cp -r runs/w9_run9u/bundled/unet $E/weights_run9u/teacher_unet
  for r in run9u/text_unet run9d1/dmd run9d2/dmd; do n=${r//\//_}; cp runs/$r/state.json $E/state_$n.json; cp runs/$r/loss.png $E/loss_$n.png; done
  pack $E e9; log done
  ;;
esac
