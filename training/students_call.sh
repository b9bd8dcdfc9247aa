#!/bin/bash
# One GPU call for the one-step students: distil the LCM student (training.distill_lcm) and the ADD
# student (training.distill_add) from the teacher in RUN side by side for TRAIN_S seconds of wall
# clock each, export teacher + students into W (fp16, shards <= 15 MB, W/manifest.yaml with
# hashes), evaluate teacher DDIM 25 w=4 vs LCM 1/2/4 vs ADD 1 (training.students_eval), and copy
# what comes back (student UNets, manifest, eval JSON/markdown/grids, stage states, loss plots,
# logs) into OUT.
#   bash training/students_call.sh RUN W OUT
# RUN: a run dir from `python -m training.export --import weights RUN` (made here from weights/ when
# RUN lacks the teacher's latent scaling). Env: TRAIN_S (400), CAPTIONS per split (512), DEVICE
# (cuda), EVAL_ARGS (extra training.students_eval arguments, e.g. for a CPU dry run), LCM_S (LCM
# seconds, default TRAIN_S; 0 = keep RUN's LCM student as it is), ADD_RESTART=1 (drop RUN/add so
# the ADD student starts again, from RUN's LCM student when there is one).
set -u -o pipefail
RUN=$1; W=$2; OUT=$3
TRAIN_S=${TRAIN_S:-400}; CAPTIONS=${CAPTIONS:-512}; DEVICE=${DEVICE:-cuda}; EVAL_ARGS=${EVAL_ARGS:-}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python}
START=$(date +%s)
el() { echo $(( $(date +%s) - START )); }
mkdir -p "$OUT/logs" "$OUT/stages" "$OUT/weights"
if ! grep -q scaling_factor "$RUN/text_unet/state.json" 2>/dev/null; then
  echo "[students] $(el) s: import weights/ into $RUN"
  $PY -m training.export --import weights "$RUN" > "$OUT/logs/import.log" 2>&1 || { tail -20 "$OUT/logs/import.log"; exit 1; }
fi
LCM_S=${LCM_S:-$TRAIN_S}
[ "${ADD_RESTART:-0}" = 1 ] && rm -rf "$RUN/add"
echo "[students] $(el) s: LCM ($LCM_S s) and ADD ($TRAIN_S s) distillation, side by side"
if [ "$LCM_S" != 0 ]; then
  $PY -m training.distill_lcm --out "$RUN" --seconds "$LCM_S" --device "$DEVICE" > "$OUT/logs/lcm.log" 2>&1 &
else
  true &
fi
LCM_PID=$!
$PY -m training.distill_add --out "$RUN" --seconds "$TRAIN_S" --device "$DEVICE" > "$OUT/logs/add.log" 2>&1
ADD_RC=$?
wait $LCM_PID
LCM_RC=$?
echo "[students] $(el) s: lcm rc=$LCM_RC add rc=$ADD_RC"; tail -n 2 "$OUT/logs/lcm.log" "$OUT/logs/add.log"
for stage in lcm add; do
  cp "$RUN/$stage/state.json" "$OUT/stages/${stage}_state.json" 2>/dev/null
  cp "$RUN/$stage/loss.png" "$OUT/stages/${stage}_loss.png" 2>/dev/null
done
[ $LCM_RC -eq 0 ] && [ $ADD_RC -eq 0 ] || exit 1
echo "[students] $(el) s: export into $W"
$PY -m training.export_students "$RUN" "$W" > "$OUT/logs/export.log" 2>&1 || { tail -20 "$OUT/logs/export.log"; exit 1; }
tail -1 "$OUT/logs/export.log"
for folder in bundled_lcm bundled_turbo; do
  mkdir -p "$OUT/weights/$folder"
  cp -r "$W/$folder/unet" "$W/$folder/scheduler" "$W/$folder/model_index.json" "$OUT/weights/$folder/"
done
cp "$W/manifest.yaml" "$OUT/weights/manifest.yaml"
echo "[students] $(el) s: evaluate ($CAPTIONS captions per split)"
# shellcheck disable=SC2086  # EVAL_ARGS is a list of arguments
$PY -m training.students_eval --weights "$W" --out "$OUT/students" --captions "$CAPTIONS" --device "$DEVICE" $EVAL_ARGS \
  > "$OUT/logs/eval.log" 2>&1 || { tail -20 "$OUT/logs/eval.log"; exit 1; }
cat "$OUT/students/students_eval.md"
echo "[students] $(el) s: done"
