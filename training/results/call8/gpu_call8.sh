#!/bin/bash
# Call 8 (GPU): the one-step student by distribution matching (training.distill_dmd), three runs
# side by side on one card, each from the shipped ADD student (weights/bundled_turbo, 0.604 / 0.549
# seen / held-out at 512 + 512 captions vs the teacher's 0.775 / 0.754):
#   R1: DMD alone, lr 1e-5, fake-score lr 5e-5, 5 fake updates per student update;
#   R2: R1 + the regression on the teacher's DDIM-10 samples (weight 0.25, DMD's first version);
#   R3: DMD alone, lr 3e-5, fake-score lr 1e-4.
# The student UNet (17.9 MB) does not fit in one upload beside the wheels, so it travels in two calls.
#   bash training/results/call8/gpu_call8.sh prepare         # wheels, shard 2 + config (call 1)
#   bash training/results/call8/gpu_call8.sh launch WAIT_S   # shard 1, start R1-R3
#   bash training/results/call8/gpu_call8.sh poll WAIT_S
#   bash training/results/call8/gpu_call8.sh finish          # export each, evaluate each vs the teacher
#   bash training/results/call8/gpu_call8.sh resume S        # R1 alone for S s more at batch 512, export, evaluate
# Ran: R1 0.633 / 0.643, R2 0.611 / 0.646, R3 0.584 / 0.605 after 780 s (seen / held-out, 512 + 512);
# R1 resumed alone for 390 s: 0.629 / 0.652 (best probe EMA) - shipped as weights/bundled_turbo.
# Env: DEVICE (cuda), TRAIN_S (780), BANK (65536), CAPTIONS (512), BATCH (256), EVAL_ARGS.
set -u -o pipefail
MODE=$1
E=runs/e8; UP=runs/up8
DEVICE=${DEVICE:-cuda}; TRAIN_S=${TRAIN_S:-780}; BANK=${BANK:-65536}; CAPTIONS=${CAPTIONS:-512}
BATCH=${BATCH:-256}; EVAL_ARGS=${EVAL_ARGS:-}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/runs/site:$PWD
PY=${PYTHON:-python3}
log() { echo "[call8 $(date +%H:%M:%S)] $*"; }
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
RUNS=(run8a run8b run8c)
case $MODE in
prepare)
  install_wheels .whl .whl_t || exit 1
  stage_student_part2 $UP; card; ls -l $UP
  $PY -c "import diffusers, torch; print('diffusers', diffusers.__version__, 'torch', torch.__version__)"
  ;;
launch)
  stage_student_part1 $UP
  ( cd $UP && sha256sum ./*.safetensors )
  rm -rf runs/run8* $E runs/bank8.pt; mkdir -p runs/run8a $E/logs
  import_runs $E runs/run8a runs/run8b runs/run8c || exit 1
  start_pipeline "$0" $E "${2:-60}"
  ;;
pipeline)
  T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
  COMMON=(--device "$DEVICE" --init-unet $UP --batch "$BATCH")
  log "R1, R2 (builds the bank of $BANK), R3 until $TRAIN_S s"
  $PY -m training.distill_dmd --out runs/run8a --seconds "$TRAIN_S" "${COMMON[@]}" --lr 1e-5 --fake-lr 5e-5 > $E/logs/dmd_r1.log 2>&1 &
  $PY -m training.distill_dmd --out runs/run8b --seconds "$TRAIN_S" "${COMMON[@]}" --lr 1e-5 --fake-lr 5e-5 \
    --ode-weight 0.25 --bank "$BANK" --bank-file runs/bank8.pt > $E/logs/dmd_r2.log 2>&1 &
  $PY -m training.distill_dmd --out runs/run8c --seconds "$TRAIN_S" "${COMMON[@]}" --lr 3e-5 --fake-lr 1e-4 > $E/logs/dmd_r3.log 2>&1 &
  wait
  log "all done at $(el) s"; touch $E/DONE
  ;;
resume)
  R=runs/e8b; W=runs/w8_run8a2; mkdir -p $R
  $PY -m training.distill_dmd --out runs/run8a --seconds "${2:-390}" --device "$DEVICE" --batch 512 --lr 1e-5 --fake-lr 5e-5 \
    > $R/dmd_r1_resume.log 2>&1
  $PY -m training.export_students runs/run8a $W --turbo-only dmd > $R/export.log 2>&1 || tail $R/export.log
  $PY -m training.students_eval --weights $W --out $R/students --captions "$CAPTIONS" --device "$DEVICE" --models bundled-turbo \
    > $R/students_eval.log 2>&1 || tail $R/students_eval.log
  cat $R/students/students_eval.md; cp runs/run8a/dmd/state.json runs/run8a/dmd/loss.png $R/
  mkdir -p $R/w/bundled_turbo; cp -r $W/bundled_turbo/unet $W/bundled_turbo/scheduler $W/bundled_turbo/model_index.json $R/w/bundled_turbo/
  pack $R e8b
  ;;
poll)
  sleep "${2:-0}"
  poll_logs $E call8 4 "probe\|Error\|error" dmd_r1 dmd_r2 dmd_r3
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  for name in "${RUNS[@]}"; do
    export_and_eval runs/$name runs/w8_$name $E $name || continue
    cp runs/$name/dmd/state.json $E/dmd_state_$name.json; cp runs/$name/dmd/loss.png $E/dmd_loss_$name.png
  done
  pack $E e8; log done
  ;;
esac
