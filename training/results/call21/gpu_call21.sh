#!/bin/bash
# Call 21 (GPU, issue 6; prepared, not yet run): the compiled DMD loop alone on the card for the whole budget.
# Call 20 (record.md there) made the loop 3.5x faster with torch.compile's CUDA graphs (2.8 student steps/s alone
# against 0.8 eager) but ran only 775 steps after ~350 s of compilation, within noise of its start; each call so
# far also restarted the fake score and the classifier from the teacher. This call:
#   a: call 20's run a continued (w = 6, lr 2e-5, fake lr 1e-4, GAN 0.05, batch 512, --compile reduce-overhead),
#      starting from call 20's compile cache (runs/cc20gz, ~39 MB gzipped: most of the ~350 s compilation), so
#      ~1,200 s of training at ~2.8 steps/s (~3,400 steps); it returns its critic (fake score + classifier in fp16,
#      E/critic_run21a) so that call 22 continues generator and critic together (distill_dmd --init-critic)
#   b (RUNS="a b" only): the same at batch 128, for steps against batch (its graphs compile afresh)
# Carried, all ignored:
#   runs/whl18     the wheels (.whl_t + py-spy)
#   runs/cc20gz    compile_cache_a.bin.gz: call 20's run-a cache, as returned (cat the parts)
#   runs/init21    unet/: call 20's run-a export (its best EMA; e20.tar weights_run20a/bundled_turbo/unet)
#   runs/critic21  (call 22 on) fake_score.safetensors + classifier.safetensors: the last call's E/critic_runNa;
#                  18 MB fits neither beside the cache (prepare) nor beside the default tree (launch): a second
#                  `prepare runs/whl18` call with the code-only tree carries it (the machine keeps carried files)
# Uploads (<= 64 MiB each): `prepare` goes with a tree of code only, `launch` with the default slim tree.
#   bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|^server/|^weights_manifest.yaml$|^training/[a-z_]*\.(py|sh|json)$|^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$'
#   bash training/results/call21/gpu_call21.sh prepare runs/whl18   # carry runs/whl18, runs/cc20gz (and runs/critic21)
#   bash tools/device_tree.sh unslim; bash tools/device_tree.sh slim  # (within the 30 s idle release)
#   CAPTIONS=128 bash training/results/call21/gpu_call21.sh launch 45 # carry runs/init21
#   bash training/results/call21/gpu_call21.sh poll WAIT_S            # chained within the 30 s idle release
#   bash training/results/call21/gpu_call21.sh finish                 # ~37 MB: the pack with run a's critic
#   bash training/results/call21/gpu_call21.sh cache                  # only if run a compiled afresh: its new cache
# Checked on this machine's CPU (DEVICE=cpu BATCH=4 CAPTIONS=4 TRAIN_S=150, `prepare runs/none`, launch, finish):
# call 20's GPU cache unpacks (md5 5ed30312...) and loads (245.8 MiB); the run ends at its deadline, and the
# pack (36.8 MB in 3 parts) holds critic_run21a/ beside the student.
# Env: as call_settings (TRAIN_S 1200, CAPTIONS 128 here), RUNS ("a"), INIT, CRITIC (runs/critic21).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
SCRIPT=$0; CAPTIONS=${CAPTIONS:-128}
call_settings 21 1200
RUNS=${RUNS:-a}; INIT=${INIT:-runs/init21/unet}; CRITIC=${CRITIC:-runs/critic21}
CC_GZ=runs/cc20gz/compile_cache_a.bin.gz; CC_IN=runs/cc21; CC_OUT=runs/cc21_out
run_stage() { echo dmd; }
run_batch() { case $1 in b) echo 128 ;; *) echo "$BATCH" ;; esac; }
run_command() {
  local args="training.distill_dmd --init-unet $INIT --guidance 6 --lr 2e-5 --fake-lr 1e-4 --gan-weight 0.05"
  [ -f "$CRITIC/fake_score.safetensors" ] && args+=" --init-critic $CRITIC"
  echo "$args --compile reduce-overhead --compile-cache $CC_OUT/compile_cache_$1.bin"
}
case ${1:-} in
prepare)  # the wheels, then call 20's cache unpacked where the pipeline looks for it
  student_runs "$@" || exit $?
  if [ -f "$CC_GZ" ]; then mkdir -p "$CC_IN"; gunzip -c "$CC_GZ" > "$CC_IN/compile_cache_a.bin"; md5sum "$CC_IN"/*.bin; fi
  ls -l "$CRITIC" 2> /dev/null || log "no critic carried: run a starts its critic from the teacher"
  exit 0
  ;;
pipeline)  # a carried cache is where the runs load (and later rewrite) it
  rm -rf "$CC_OUT"; mkdir -p "$CC_OUT"; cp "$CC_IN"/compile_cache_*.bin "$CC_OUT"/ 2> /dev/null || true
  ;;
cache)  # run a's cache as written in this call (gzipped, 15 MB parts), for a call after a fresh compilation
  gzip -c "$CC_OUT/compile_cache_a.bin" | split -b 15M -d - "${OUT:-runs}/compile_cache_a.bin.gz.part"
  ls -l "${OUT:-runs}"; exit 0
  ;;
esac
student_runs "$@"
