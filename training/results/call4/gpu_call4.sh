#!/bin/bash
# Call 4 (GPU): continue the teacher (text encoder + UNet) from weights/bundled as one long run in
# a detached process, polled by later calls on the same warm machine; then export and evaluate.
#   bash training/results/call4/gpu_call4.sh launch SECONDS   # import weights, start training
#   bash training/results/call4/gpu_call4.sh poll WAIT_S      # wait, show progress, back up a snapshot
#   bash training/results/call4/gpu_call4.sh finish           # wait for the end, export, full eval grid
# RUN (runs/run4) lives in the repository's ignored runs/ folder, kept between calls.
set -u
MODE=$1
RUN=runs/run4; W=runs/w4
export PYTHONUNBUFFERED=1
log() { echo "[call4 $(date +%H:%M:%S)] $*"; }
case $MODE in
launch)
  SECONDS_TRAIN=$2
  rm -rf $RUN $W; mkdir -p $RUN
  python3 -m training.export --import weights $RUN > $RUN/import.log 2>&1 || { cat $RUN/import.log; exit 1; }
  cp training/results/call3/text_unet_state.json $RUN/text_unet/state.json  # step 8183, scaling factor
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $RUN/card.txt
  setsid nohup python3 -m training.text_unet --out $RUN --seconds "$SECONDS_TRAIN" --batch 1024 --compile \
    --snapshot-s 240 > $RUN/train.log 2>&1 < /dev/null &
  log "training started for $SECONDS_TRAIN s"
  sleep "${3:-240}"; grep -v Warning $RUN/train.log | tail -n 15; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
  ;;
poll)
  sleep "$2"; grep -v Warning $RUN/train.log | tail -n 8
  python3 -c "import json;s=json.load(open('$RUN/text_unet/state.json'));l=s['losses']['eps_mse'];print('step',s['step'],'loss',l[-1])"
  ;;
finish)
  while pgrep -f "training.text_unet" > /dev/null; do sleep 5; done
  tail -n 3 $RUN/train.log
  log "export"
  python3 -m training.export $RUN $W > $RUN/export.log 2>&1; tail -n 1 $RUN/export.log
  cp -r $W/bundled/. weights/bundled/
  python3 - "$W" <<'PY'
import re, sys
from pathlib import Path
from training.export import manifest_files
path = Path("weights_manifest.yaml")
block = manifest_files(Path(sys.argv[1]) / "bundled")
text = re.sub(r"(  - id: bundled\n(?:.*\n)*?)    files:\n(?:      - .*\n)+", lambda m: m.group(1) + block, path.read_text(), count=1)
path.write_text(text)
PY
  python3 -m server.cli weights verify bundled | tail -n 2
  log "eval grid"
  timeout 300 python3 -m server.cli eval --model bundled --captions 512 --out $RUN/eval > $RUN/eval.log 2>&1; tail -n 3 $RUN/eval.log
  cat $RUN/eval/eval.md
  tar -C weights -cf - bundled | split -b 15M -d - $OUT/bundled.tar.part
  cp weights_manifest.yaml $OUT/
  tar -czf $OUT/results4.tar.gz -C $RUN train.log export.log eval.log card.txt eval text_unet/state.json text_unet/loss.png text_unet/samples.png text_unet/samples.txt
  ls -l $OUT; log done
  ;;
esac
