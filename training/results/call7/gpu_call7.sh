#!/bin/bash
# Call 7 (GPU): the one-step ADD student, round 3, from the call-6 ADD student (its EMA, shipped as
# weights/bundled_turbo) with the call-6 decoder. Call 6 showed the raw ADD weights far noisier than
# their EMA (one-step caption accuracy 0.48 vs 0.68 on 256 seen captions) and the regression loss
# rising while the GAN's discriminator stayed near chance (hinge ~1.9 per head), so both runs here
# take Adam beta1 0.9, a smaller adversarial weight (0.3) and batch 512, side by side:
#   R1: ADD's distillation loss kept at 2.5 (regression 1);  R2: regression-led (regression 3, distillation 0.5).
# The student UNet (17.9 MB) does not fit in one upload beside the wheels, so it travels in two calls.
#   bash training/results/call7/gpu_call7.sh prepare         # wheels, shard 2 + config (call 1)
#   bash training/results/call7/gpu_call7.sh launch WAIT_S   # shard 1, bank, start R1 and R2
#   bash training/results/call7/gpu_call7.sh poll WAIT_S
#   bash training/results/call7/gpu_call7.sh finish          # export each, evaluate each vs the teacher
# Env: DEVICE (cuda), TRAIN_S (780), BANK (393216), CAPTIONS (512), ADD_BATCH (512), EVAL_ARGS.
set -u -o pipefail
MODE=$1
RUN=runs/run7; E=runs/e7; UP=runs/up7
DEVICE=${DEVICE:-cuda}; TRAIN_S=${TRAIN_S:-780}; BANK=${BANK:-393216}; CAPTIONS=${CAPTIONS:-512}
ADD_BATCH=${ADD_BATCH:-512}; EVAL_ARGS=${EVAL_ARGS:-}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/runs/site:$PWD
PY=${PYTHON:-python3}
log() { echo "[call7 $(date +%H:%M:%S)] $*"; }
TURBO=weights/bundled_turbo/unet
case $MODE in
prepare)
  for wheels in .whl .whl_t; do
    if [ -d $wheels ]; then
      mkdir -p runs/site
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site $wheels/*.whl || exit 1
    fi
  done
  mkdir -p $UP; cp $TURBO/config.json $TURBO/*.index.json $TURBO/*00002-of-00002.safetensors $UP/
  { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo cpu; }; ls -l $UP
  ;;
launch)
  [ -f $TURBO/diffusion_pytorch_model-00001-of-00002.safetensors ] && cp $TURBO/*00001-of-00002.safetensors $UP/
  ( cd $UP && sha256sum ./*.safetensors )
  rm -rf runs/run7* $E runs/bank7.pt; mkdir -p $RUN $E/logs
  { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo cpu; } | tee $E/card.txt
  $PY -m training.export --import weights $RUN > $E/logs/import.log 2>&1 || { cat $E/logs/import.log; exit 1; }
  cp -r $RUN ${RUN}b
  setsid nohup bash "$0" pipeline > $E/pipeline.log 2>&1 < /dev/null &
  log "pipeline started"; sleep "${2:-60}"; bash "$0" poll 0
  ;;
pipeline)
  T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
  COMMON=(--device "$DEVICE" --init-unet $UP --lr 2e-5 --beta1 0.9 --adv-weight 0.3 --batch "$ADD_BATCH" --bank-file runs/bank7.pt)
  log "R1 (distillation 2.5, regression 1) builds the bank ($BANK) and trains until $TRAIN_S s"
  $PY -m training.distill_add --out $RUN --seconds "$TRAIN_S" "${COMMON[@]}" --bank "$BANK" --distill-weight 2.5 --ode-weight 1 \
    > $E/logs/add_r1.log 2>&1 &
  while [ ! -f runs/bank7.pt ]; do sleep 2; done
  LEFT=$(( TRAIN_S - $(el) ))
  log "bank ready at $(el) s; R2 (distillation 0.5, regression 3) for $LEFT s"
  $PY -m training.distill_add --out ${RUN}b --seconds "$LEFT" "${COMMON[@]}" --distill-weight 0.5 --ode-weight 3 \
    > $E/logs/add_r2.log 2>&1
  wait
  log "all done at $(el) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  grep -h "^\[call7" $E/pipeline.log | tail -n 4
  for f in add_r1 add_r2; do [ -f $E/logs/$f.log ] && echo "$f: $(grep -v Warning $E/logs/$f.log | tail -n 1 | cut -c1-400)"; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null || true
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  for r in "$RUN" "${RUN}b"; do
    name=$(basename $r); W=runs/w7_$name
    $PY - "$r" "$W" <<'PY' > $E/logs/export_$name.log 2>&1 || { tail -n 20 $E/logs/export_$name.log; exit 1; }
import sys
from pathlib import Path
from training.export import export, export_student
from training.export_students import with_files
run, weights = Path(sys.argv[1]), Path(sys.argv[2])
export(run, weights)
export_student(run, weights, "add")
text = Path("weights_manifest.yaml").read_text()
for model_id, folder in (("bundled", "bundled"), ("bundled-turbo", "bundled_turbo")):
    text = with_files(text, model_id, weights / folder)
(weights / "manifest.yaml").write_text(text)
PY
    # shellcheck disable=SC2086
    $PY -m training.students_eval --weights $W --out $E/students_$name --captions "$CAPTIONS" --device "$DEVICE" \
      --models bundled-turbo $EVAL_ARGS > $E/logs/students_eval_$name.log 2>&1 || tail -n 20 $E/logs/students_eval_$name.log
    echo "== $name"; cat $E/students_$name/students_eval.md
    cp $r/add/state.json $E/add_state_$name.json; cp $r/add/loss.png $E/add_loss_$name.png
    mkdir -p $E/weights_$name/bundled_turbo
    cp -r $W/bundled_turbo/unet $W/bundled_turbo/scheduler $W/bundled_turbo/model_index.json $E/weights_$name/bundled_turbo/
  done
  tar -C $E -cf - . | split -b 15M -d - "${OUT:-runs}/e7.tar.part"
  ls -l "${OUT:-runs}"; log done
  ;;
esac
