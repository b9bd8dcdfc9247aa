#!/bin/bash
# Call 21 (GPU, issue 6): the compiled DMD loop for the whole budget, two ways, each after a critic warm-up.
# Call 20 (record.md there) made the loop 3.5x faster with torch.compile's CUDA graphs (2.8 student steps/s alone
# against 0.8 eager) and its 775 steps gave the student now shipped (0.707 / 0.676 on 512 + 512 CPU captions, 0.78x
# of the teacher); each call so far restarted the fake score and the classifier from the teacher. Where it fails:
# captions of three objects, 0.378 whole-caption agreement against the teacher's 0.806 (one object 0.897 vs 0.959,
# two 0.707 vs 0.893), and there shapes (0.429) and sizes (0.396) while counts (0.857) and colours (0.735) hold
# better (training/results/analysis/position_breakdown_turbo_call20.md). This call, the runs from the shipped
# student with call 20's recipe (w = 6, lr 2e-5, fake lr 1e-4, GAN 0.05, batch 512, --compile reduce-overhead) and
# call 20's compile cache (runs/cc20gz, ~39 MB gzipped: most of the ~350 s compilation):
# Both runs first train the fake score and classifier alone for WARMUP (500) updates on the shipped student's
# samples (distill_dmd --critic-warmup): restarted from the teacher, the critic scores the teacher's distribution,
# and in call 20 the probe fell 0.812 -> 0.688 in run a's first steps and took ~580 steps to come back.
# This session's checkout had lost the ignored runs/ (the cache and the wheels): the runs compile afresh (~350 s of
# TRAIN_S) and the wheels are runs/whl (`bash tools/device_wheels.sh runs/whl`: diffusers 0.42.1, open_clip, ...).
#   a: the same as call 20: more steps
#   b: captions of three objects drawn twice as often (--three-object-weight 2; the same graphs as a)
#   c (RUNS="a c"): the GAN classifier also on the fake score's 16x16 and 8x8 down-block maps (--classifier-features
#      multi); its fake-score graphs compile afresh (~350 s). Not the default: trained alone on frozen features on
#      CPU it told real from the student's samples no better than the mid-block one (0.607 vs 0.645 after 300
#      steps of 32; training/results/analysis/gan_probe_call20_student.json)
# finish returns run a's critic (fake score + classifier in fp16, E/critic_run21a) so that call 22 continues
# generator and critic together (distill_dmd --init-critic). RUNS=a runs a alone (~2.8 steps/s).
# Carried, all ignored:
#   runs/whl18     the wheels (.whl_t + py-spy)
#   runs/cc20gz    compile_cache_a.bin.gz: call 20's run-a cache, as returned (cat the parts)
#   runs/init21    unet/: call 20's run-a export (its best EMA; e20.tar weights_run20a/bundled_turbo/unet; the same
#                  weights as weights/bundled_turbo/unet since it was installed)
#   runs/critic21  (call 22 on) fake_score.safetensors + classifier.safetensors: the last call's E/critic_runNa;
#                  18 MB fits neither beside the cache (prepare) nor beside the default tree (launch): a second
#                  `prepare runs/whl18` call with the code-only tree carries it (the machine keeps carried files)
# Uploads (<= 64 MiB each): `prepare` goes with a tree of code only, `launch` with the default slim tree.
#   bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|^server/|^weights_manifest.yaml$|^training/[a-z_]*\.(py|sh|json)$|^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$'
#   bash training/results/call21/gpu_call21.sh prepare runs/whl18   # carry runs/whl18, runs/cc20gz (and runs/critic21)
#   bash tools/device_tree.sh unslim; bash tools/device_tree.sh slim  # (within the 30 s idle release)
#   CAPTIONS=128 bash training/results/call21/gpu_call21.sh launch 45 # carry runs/init21
#   bash training/results/call21/gpu_call21.sh poll WAIT_S            # chained within the 30 s idle release
#   bash training/results/call21/gpu_call21.sh finish                 # ~55 MB: the pack with run a's critic
#                                                                     # (CRITIC_RUN=b: b's, if its probes lead)
#   bash training/results/call21/gpu_call21.sh cache                  # only if run a compiled afresh: its new cache
# Checked on this machine's CPU (DEVICE=cpu BATCH=4 CAPTIONS=4 TRAIN_S=150, `prepare runs/none`, launch, finish):
# call 20's GPU cache unpacks (md5 5ed30312...) and loads (245.8 MiB); the run ends at its deadline, and the
# pack (36.8 MB in 3 parts with run a alone) holds critic_run21a/ beside the student. Again with a and b: both
# load the cache and reach a student step; the pack is 54.8 MB in 4 parts (the second run's student, not its
# critic), within a reply's 64 MB. Once more with a and the multi-scale run (then lettered b; TRAIN_S=200): a
# reached its first student step at 34 s from this machine's warm inductor cache, after the classifier change to
# distill_dmd (its graphs unchanged); the multi-scale run compiled its fake-score graphs and took its first step
# at 181 s; pack 54.8 MB in 4 parts.
# Call 22 is this recipe again on a second machine of the same session (CALL=22: runs/e22, runs/run22X): run b's
# student (runs/init22) alone with run a's returned critic (runs/critic22), RUNS=b, so the three-object weighting
# goes on; record.md says what was run.
# Call 21 ran 2026-11-27 (record.md): a and b, TRAIN_S=1300 (stopped at 1,056 s), 1,056 / 1,097 steps; paired against the
# shipped student on 1,536 CPU captions +0.023 / +0.016 (+- 0.012), not installed. Call 22 was lost (record.md).
# Call 23 (CALL=23, CRITIC=runs/critic22: run 21a's returned critic; runs/init21 = the call-21 mean): a and b again,
# TRAIN_S=1350, stopped at 1,250 s; training/results/call23/record.md.
# Env: as call_settings (TRAIN_S 1200, CAPTIONS 128 here), CALL (21), RUNS ("a b"), INIT, CRITIC (runs/critic21),
# WARMUP (500).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
SCRIPT=$0; CAPTIONS=${CAPTIONS:-128}
call_settings "${CALL:-21}" 1200
RUNS=${RUNS:-a b}; INIT=${INIT:-runs/init21/unet}; CRITIC=${CRITIC:-runs/critic21}
CC_GZ=runs/cc20gz/compile_cache_a.bin.gz; CC_IN=runs/cc21; CC_OUT=runs/cc21_out
run_stage() { echo dmd; }
run_command() {
  local args="training.distill_dmd --init-unet $INIT --guidance 6 --lr 2e-5 --fake-lr 1e-4 --gan-weight 0.05"
  [ -f "$CRITIC/fake_score.safetensors" ] && args+=" --init-critic $CRITIC"
  args+=" --critic-warmup ${WARMUP:-500}"
  [ "$1" = b ] && args+=" --three-object-weight 2"
  [ "$1" = c ] && args+=" --classifier-features multi"
  echo "$args --compile reduce-overhead --compile-cache $CC_OUT/compile_cache_$1.bin"
}
case ${1:-} in
prepare)  # the wheels, then call 20's cache unpacked where the pipeline looks for it
  student_runs "$@" || exit $?
  if [ -f "$CC_GZ" ]; then  # one cache for every run: b's graphs are a's, c's student and teacher graphs too
    mkdir -p "$CC_IN"; gunzip -c "$CC_GZ" > "$CC_IN/compile_cache_a.bin"
    for x in b c; do cp "$CC_IN/compile_cache_a.bin" "$CC_IN/compile_cache_$x.bin"; done
    md5sum "$CC_IN"/*.bin
  fi
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
