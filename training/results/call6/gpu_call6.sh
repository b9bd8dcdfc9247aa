#!/bin/bash
# Call 6 (GPU): the one-step student, round 2, and a longer VAE decoder fine-tune, as one detached
# pipeline on a warm machine, polled by later calls (the teacher's text encoder + UNet stay as
# shipped, so students distilled here and the new decoder fit the shipped model):
#   - the decoder (training.vae_decoder, encoder frozen) for DEC_S s, then the full `darkroom eval`
#     grid of the teacher with it;
#   - the LCM student from the teacher for LCM_S s;
#   - three ADD runs side by side, all with the ODE-regression bank (one bank of BANK triples,
#     built once by the first run and shared through a file): C from the teacher (lr 1e-4, starts
#     at once), A and B from the new LCM student (lr 3e-5 and 1e-4, start when it is done);
#   - finish: the ADD run that scores best on its own seen captions is exported with the LCM
#     student and the new decoder (training.export_students), then training.students_eval on a
#     quiet GPU (accuracy, FID, latency).
#   bash training/results/call6/gpu_call6.sh launch WAIT_S   # install wheels, import weights, start
#   bash training/results/call6/gpu_call6.sh poll WAIT_S     # progress
#   bash training/results/call6/gpu_call6.sh finish          # wait, export, evaluate, pack $OUT
# Env: DEVICE (cuda), DEC_S (840), LCM_S (360), ADD_S (1080, counted from launch), BANK (262144),
# CAPTIONS (512), ADD_BATCH (256), EVAL_ARGS (students_eval), GRID_ARGS (eval grid). Everything lives in the ignored runs/ folder, kept between calls.
set -u -o pipefail
MODE=$1
RUN=runs/run6; E=runs/e6; W=runs/w6
DEVICE=${DEVICE:-cuda}; DEC_S=${DEC_S:-840}; LCM_S=${LCM_S:-360}; ADD_S=${ADD_S:-1080}
BANK=${BANK:-262144}; CAPTIONS=${CAPTIONS:-512}; EVAL_ARGS=${EVAL_ARGS:-}; GRID_ARGS=${GRID_ARGS:-}
ADD_BATCH=${ADD_BATCH:-256}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/runs/site:$PWD
PY=${PYTHON:-python3}
log() { echo "[call6 $(date +%H:%M:%S)] $*"; }
install_vae() {  # the new decoder into weights/bundled on this machine, its hash into the manifest
  cp "$1" weights/bundled/vae/diffusion_pytorch_model.safetensors
  $PY - <<'PY'
import hashlib, re
from pathlib import Path
f = Path("weights/bundled/vae/diffusion_pytorch_model.safetensors")
digest = hashlib.sha256(f.read_bytes()).hexdigest()
path = Path("weights_manifest.yaml")
text = re.sub(r"(- \{path: vae/diffusion_pytorch_model.safetensors, sha256: )[0-9a-f]{64}(, size: )\d+",
              lambda m: f"{m.group(1)}{digest}{m.group(2)}{f.stat().st_size}", path.read_text())
path.write_text(text)
print("vae sha256", digest)
PY
}
case $MODE in
launch)
  for wheels in .whl .whl_t; do  # .whl_t: the training subset, when the tree limit leaves no room for .whl
    if [ -d $wheels ]; then
      mkdir -p runs/site
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site $wheels/*.whl || exit 1
    fi
  done
  rm -rf runs/run6* $E $W runs/bank6.pt; mkdir -p $RUN $E/logs
  { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo cpu; } | tee $E/card.txt
  $PY -m training.export --import weights $RUN > $E/logs/import.log 2>&1 || { cat $E/logs/import.log; exit 1; }
  rm -rf $RUN/lcm  # the LCM student starts again from the teacher (the shipped one does not travel)
  cp -r $RUN ${RUN}c
  setsid nohup bash "$0" pipeline > $E/pipeline.log 2>&1 < /dev/null &
  log "pipeline started"; sleep "${2:-60}"; bash "$0" poll 0
  ;;
pipeline)
  T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
  log "decoder ($DEC_S s), LCM ($LCM_S s), ADD-C from the teacher (until $ADD_S s)"
  ( $PY -m training.vae_decoder --out $RUN --seconds "$DEC_S" --device "$DEVICE" --export $E/dec > $E/logs/vae_decoder.log 2>&1 \
    && install_vae $E/dec/vae/diffusion_pytorch_model.safetensors > $E/logs/install_vae.log 2>&1 \
    && log "decoder done at $(el) s; eval grid" \
    && $PY -m server.cli eval --model bundled --captions "$CAPTIONS" --out $E/eval --device "$DEVICE" $GRID_ARGS > $E/logs/eval_grid.log 2>&1; \
    log "decoder + grid rc=$? at $(el) s" ) &
  $PY -m training.distill_add --out ${RUN}c --seconds "$ADD_S" --device "$DEVICE" --init teacher --lr 1e-4 --batch "$ADD_BATCH" \
    --bank "$BANK" --bank-file runs/bank6.pt > $E/logs/add_c.log 2>&1 &
  $PY -m training.distill_lcm --out $RUN --seconds "$LCM_S" --device "$DEVICE" > $E/logs/lcm.log 2>&1
  log "lcm rc=$? at $(el) s"
  cp -r $RUN ${RUN}b; rm -rf ${RUN}b/vae_decoder
  while [ ! -f runs/bank6.pt ]; do sleep 2; done
  LEFT=$(( ADD_S - $(el) ))
  log "ADD-A (lr 3e-5) and ADD-B (lr 1e-4) from the LCM student for $LEFT s"
  $PY -m training.distill_add --out ${RUN}b --seconds "$LEFT" --device "$DEVICE" --init lcm --lr 1e-4 --batch "$ADD_BATCH" \
    --bank-file runs/bank6.pt > $E/logs/add_b.log 2>&1 &
  $PY -m training.distill_add --out $RUN --seconds "$LEFT" --device "$DEVICE" --init lcm --lr 3e-5 --batch "$ADD_BATCH" \
    --bank-file runs/bank6.pt > $E/logs/add_a.log 2>&1
  wait
  log "all done at $(el) s"; touch $E/DONE
  ;;
poll)
  sleep "${2:-0}"
  grep -h "^\[call6" $E/pipeline.log | tail -n 6
  for f in vae_decoder lcm add_a add_b add_c eval_grid; do
    [ -f $E/logs/$f.log ] && echo "$f: $(grep -v Warning $E/logs/$f.log | tail -n 1 | cut -c1-300)"
  done
  for d in $RUN/vae_decoder $RUN/lcm $RUN/add ${RUN}b/add ${RUN}c/add; do
    [ -f $d/state.json ] && $PY -c "import json,sys;s=json.load(open('$d/state.json'));print('$d', 'step', s['step'], {k: v[-1] for k, v in s.get('losses', {}).items()})"
  done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null || true
  ;;
finish)
  while [ ! -f $E/DONE ]; do sleep 5; done
  bash "$0" poll 0
  BEST=$($PY - <<'PY'
import json
best, score = None, -1.0
for run in ("runs/run6", "runs/run6b", "runs/run6c"):
    m = json.load(open(f"{run}/add/state.json"))["metrics"]
    acc = max(m.get("ema_student_add1_seen_caption", -1), m.get("student_add1_seen_caption", -1))
    print(run, m.get("init"), {k: v for k, v in m.items() if "caption" in k}, file=open("runs/e6/add_choice.txt", "a"))
    if acc > score:
        best, score = run, acc
print(best)
PY
)
  cat $E/add_choice.txt; log "exporting ADD from $BEST"
  if [ "$BEST" != "$RUN" ]; then rm -rf $RUN/add; cp -r $BEST/add $RUN/add; fi
  cp $RUN/vae_decoder/vae.safetensors $RUN/autoencoder/vae.safetensors
  $PY -m training.export_students $RUN $W > $E/logs/export.log 2>&1 || { tail -n 20 $E/logs/export.log; exit 1; }
  tail -n 1 $E/logs/export.log
  # shellcheck disable=SC2086
  $PY -m training.students_eval --weights $W --out $E/students --captions "$CAPTIONS" --device "$DEVICE" $EVAL_ARGS \
    > $E/logs/students_eval.log 2>&1 || tail -n 20 $E/logs/students_eval.log
  cat $E/students/students_eval.md
  head -n 12 $E/eval/eval.md
  for s in vae_decoder lcm add; do cp $RUN/$s/state.json $E/${s}_state.json; cp $RUN/$s/loss.png $E/${s}_loss.png; done
  for r in b c; do cp ${RUN}$r/add/state.json $E/add_${r}_state.json; cp ${RUN}$r/add/loss.png $E/add_${r}_loss.png; done
  mkdir -p $E/weights
  cp $W/manifest.yaml $E/weights/
  for folder in bundled_lcm bundled_turbo; do
    mkdir -p $E/weights/$folder; cp -r $W/$folder/unet $W/$folder/scheduler $W/$folder/model_index.json $E/weights/$folder/
  done
  mkdir -p $E/weights/bundled_vae; cp $W/bundled/vae/* $E/weights/bundled_vae/
  tar -C $E -cf - . | split -b 15M -d - "${OUT:-runs}/e6.tar.part"
  ls -l "${OUT:-runs}"; log done
  ;;
esac
