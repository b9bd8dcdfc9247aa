#!/bin/bash
# Call 20 (GPU, issue 6; run on an NVIDIA H200 on 2026-11-27 with TRAIN_S=700, run b stopped at 505 s: record.md):
# the DMD loop compiled. Calls 18-19 showed DMD from this student
# stopped moving under every single-knob change (training/results/call19/record.md); DMD2's remaining difference
# is tens of thousands of steps, and the loop is launch-bound alone (0.8 steps/s eager, card 29-51% busy, call 17).
# distill_dmd --compile (the student, teacher and fake-score passes; the classifier's mid-block features are an
# explicit output since call 19, the caption embeddings computed once) is checked on CPU only:
#   a: --compile reduce-overhead (CUDA graphs through torch.compile)
#   b: --compile default (fusion only): the fallback if a fails, and the rate without graphs
# Both from call 19's run c (0.678 / 0.670 on 512 + 512 captions on CPU), carried as runs/init20/unet (ignored;
# call 19's weights_run19c/bundled_turbo/unet), with w = 6, lr 2e-5 (run c's recipe). Compare each run's steps per
# second (its "dmd step N t S" lines: the first step shows the compile time) with call 17's 0.8 alone; if a compiled run is several times faster,
# the next call runs it alone for the whole budget.
#   bash training/results/call20/gpu_call20.sh prepare runs/whl18   # carry runs/whl18 (.whl_t + py-spy)
#   bash training/results/call20/gpu_call20.sh launch WAIT_S        # carry runs/init20 (the slim default tree beside it)
#   bash training/results/call20/gpu_call20.sh poll WAIT_S          # chained within the 30 s idle release
#   bash training/results/call20/gpu_call20.sh finish
# A 150 s try at the end of the 2026-11-27 session (the device budget's last 4 minutes; NVIDIA H200; RUNS="a b"
# INIT=weights/bundled/unet TRAIN_S=150 launch 0): after 150 s both runs were still compiling (no error, no step
# yet; card 46% busy, 17 GB), so neither rate is known. Budget several minutes of compilation.
# torch.compile's artifacts: each run writes runs/cc20_out/compile_cache_X.bin after its first student step
# (distill_dmd --compile-cache); `finish` returns the first run's beside the pack, gzipped, in parts
# (compile_cache_X.bin.gz.partNN; 30 MiB on this machine's CPU before gzip). Carry it back as
# runs/cc20/compile_cache_X.bin (cat the parts | gunzip) in a later call's launch, and the runs start from it.
# Env: as call_settings (TRAIN_S 1100, CAPTIONS 128 here), RUNS ("a b"; "a" alone once a is known to work), INIT.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
SCRIPT=$0; CAPTIONS=${CAPTIONS:-128}
call_settings 20 1100
RUNS=${RUNS:-a b}; INIT=${INIT:-runs/init20/unet}; CC_IN=runs/cc20; CC_OUT=runs/cc20_out
PROFILE_RUN=${PROFILE_RUN-}
run_stage() { echo dmd; }
run_command() {
  local base="training.distill_dmd --init-unet $INIT --guidance 6 --lr 2e-5 --fake-lr 1e-4 --gan-weight 0.05"
  case $1 in
  a) echo "$base --compile reduce-overhead --compile-cache $CC_OUT/compile_cache_a.bin" ;;
  b) echo "$base --compile default --compile-cache $CC_OUT/compile_cache_b.bin" ;;
  esac
}
if [ "${1:-}" = pipeline ]; then  # a carried cache is where the runs load (and later rewrite) it
  rm -rf "$CC_OUT"; mkdir -p "$CC_OUT"; cp "$CC_IN"/compile_cache_*.bin "$CC_OUT"/ 2> /dev/null || true
fi
student_runs "$@" || exit $?
if [ "${1:-}" = finish ]; then  # the first run's cache that exists, gzipped in 15 MB parts if it fits 2 of them
  for x in $RUNS; do
    f=$CC_OUT/compile_cache_$x.bin
    [ -f "$f" ] || continue
    gzip -c "$f" > "$f.gz"
    if [ "$(stat -c %s "$f.gz")" -lt 31000000 ]; then
      split -b 15M -d "$f.gz" "${OUT:-runs}/compile_cache_$x.bin.gz.part"
    else
      log "$f.gz: $(stat -c %s "$f.gz") bytes, not returned"
    fi
    break
  done
fi
