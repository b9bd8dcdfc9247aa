#!/bin/bash
# Call 3 (GPU): resume text encoder + UNet from weights/bundled for a wall-clock budget, export
# fp16 weights in the shipped layout, and evaluate old vs new weights on the same captions.
# Env: OUT (results), TRAIN_END (s since start when training must end), EVAL_S, CAPTIONS, COMPILE.
set -u
START=$(date +%s)
el() { echo $(( $(date +%s) - START )); }
OUT=${OUT:-/tmp/out3}; RUN=${RUN:-/tmp/run3}; W3=${W3:-/tmp/w3}
TRAIN_END=${TRAIN_END:-465}; EVAL_S=${EVAL_S:-30}; CAPTIONS=${CAPTIONS:-256}; COMPILE=${COMPILE---compile}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p $OUT $RUN/logs
echo "[call3] $(el) s: import weights/bundled"
python3 -m training.export --import weights $RUN > $RUN/logs/import.log 2>&1 || { cat $RUN/logs/import.log; exit 1; }
cp training/results/call2/text_unet_state.json $RUN/text_unet/state.json  # step 4635, scaling factor
echo "[call3] $(el) s: train for $((TRAIN_END - $(el))) s ($COMPILE)"
python3 training/results/call3/train_compiled.py --out $RUN --seconds $((TRAIN_END - $(el))) $COMPILE 2>&1 | tee $RUN/logs/text_unet.log
if [ ${PIPESTATUS[0]} -ne 0 ]; then
  echo "[call3] $(el) s: compiled run failed; eager for what is left"
  python3 -m training.text_unet --out $RUN --seconds $((TRAIN_END - $(el))) 2>&1 | tee -a $RUN/logs/text_unet.log
fi
echo "[call3] $(el) s: export"
python3 -m training.export $RUN $W3 > $RUN/logs/export.log 2>&1; tail -1 $RUN/logs/export.log
python3 - "$W3" > /tmp/m3.yaml <<'PY'
import re, sys
from pathlib import Path
from training.export import manifest_files
text = Path("weights_manifest.yaml").read_text()
block = manifest_files(Path(sys.argv[1]) / "bundled")
print(re.sub(r"(  - id: bundled\n(?:.*\n)*?)    files:\n(?:      - .*\n)+", lambda m: m.group(1) + block, text, count=1), end="")
PY
ls -l $W3/bundled/*/
echo "[call3] $(el) s: eval old and new (same captions)"
DARKROOM_WEIGHTS_ROOT=$W3 timeout $((EVAL_S + 40)) python3 -m server.cli eval --model bundled --manifest /tmp/m3.yaml --captions $CAPTIONS --out $RUN/eval_new --seconds $EVAL_S > $RUN/logs/eval_new.log 2>&1 &
timeout $((EVAL_S + 40)) python3 -m server.cli eval --model bundled --manifest weights_manifest.yaml --captions $CAPTIONS --out $RUN/eval_old --seconds $EVAL_S > $RUN/logs/eval_old.log 2>&1 &
wait
for m in old new; do echo "== $m"; cat $RUN/eval_$m/eval.md || tail -n 5 $RUN/logs/eval_$m.log; done
cp /tmp/m3.yaml $RUN/manifest_bundled_new.yaml
tar -C $W3 -cf - bundled | split -b 15M -d - $OUT/bundled.tar.part
tar -czf $OUT/results3.tar.gz -C $RUN logs eval_new eval_old text_unet/state.json text_unet/loss.png text_unet/samples.png text_unet/samples.txt manifest_bundled_new.yaml
ls -l $OUT; echo "[call3] $(el) s: done"
