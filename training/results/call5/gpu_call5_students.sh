#!/bin/bash
# Call 5b (GPU): on the call-5a run (new VAE decoder in runs/run5/autoencoder), side by side:
# the LCM and ADD students (training/students_call.sh: distil, export, eval) and the sketch
# ControlNet (train, export, eval). Everything that comes back is tarred and split <= 15 MiB.
#   bash training/results/call5/gpu_call5_students.sh TRAIN_S
set -u
RUN=runs/run5; O=runs/o5b
export PYTHONUNBUFFERED=1
log() { echo "[call5b $(date +%H:%M:%S)] $*"; }
rm -rf $O runs/w5; mkdir -p $O/students $O/controlnet
nvidia-smi --query-gpu=name --format=csv,noheader > $O/card.txt
log "students and ControlNet, $1 s of training each"
TRAIN_S=$1 PYTHON=python3 bash training/students_call.sh $RUN runs/w5 $O/students > $O/students_call.log 2>&1 &
S_PID=$!
( python3 -m training.controlnet --out $RUN --seconds "$1" --device cuda \
  && python3 -m training.controlnet --out $RUN --export $O/controlnet/bundled_sketch_controlnet \
  && python3 -m training.controlnet_eval --out $RUN --results $O/controlnet --device cuda ) > $O/controlnet.log 2>&1
log "controlnet rc=$?"; grep -v Warning $O/controlnet.log | tail -n 12
wait $S_PID; log "students rc=$?"; tail -n 25 $O/students_call.log
cp $RUN/controlnet/state.json $O/controlnet/controlnet_state.json 2>/dev/null
cp $RUN/controlnet/loss.png $O/controlnet/controlnet_loss.png 2>/dev/null
tar -C $O -cf - . | split -b 15M -d - $OUT/o5b.tar.part
ls -l $OUT; log done
