#!/bin/bash
# Call 32 (GPU, issue 6; session 32): where the one-step student's batch-1 time goes on the card, before any new lever.
# No card has timed call 30's student (the shipped bundled-turbo) or the compiled-and-graphed decoder
# (vae_accel=compile_graphs) yet. Steps, on one machine, in two calls (the tree with the teacher's and the student's
# weights and the wheels is over the 64 MiB a call sends):
#   (code-only tree)    bash training/results/call32/gpu_latency32.sh prepare runs/whl   # carry runs/whl
#   (weights tree)      bash training/results/call32/gpu_latency32.sh latency            # -> $OUT
#   (weights tree)      bash training/results/call32/gpu_latency32.sh serve              # after prepare, on a fresh machine
# The code-only tree: as call 31's. The weights tree: bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|
#   ^server/|^tests/|^weights/bundled/|^weights/bundled_turbo/|^weights_manifest.yaml$|^training/[a-z_]*\.(py|sh)$|
#   ^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$' (one line).
# latency: the decoder levers' CUDA tests (pytest.txt), training.students_eval --latency-only for the teacher and the
# student with each lever in turn (students_latency.json, latency.log), then bench.phases (phases.json,
# phases_profiles.txt): each phase of a batch-1 call timed alone, and the operators the profiler saw per call.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
latency_settings 32
case ${1:-} in
prepare) prepare_card "${2:-}" || exit 1 ;;
latency)
  card | tee "$O/card.txt"
  $PY -m pytest -q -p no:cacheprovider -rs \
    tests/test_perf_levers.py::test_the_compiled_decoder_in_either_layout_and_its_graphs_keep_the_eager_images \
    tests/test_tiny_decoder_api.py::test_the_decoder_lever_wraps_the_tiny_decoder_too_and_keeps_its_images \
    tests/test_sync_free.py tests/test_text_graphs.py tests/pipelines/test_accel.py 2>&1 \
    | tail -n 25 | tee "$O/pytest.txt"
  $PY -m training.students_eval --weights weights --manifest weights_manifest.yaml --out "$O" --latency-only \
    --models bundled-turbo > "$O/latency.log" 2>&1 || tail -n 20 "$O/latency.log"
  grep " ms " "$O/latency.log"
  $PY -m bench.phases --out "$O" > "$O/phases.log" 2>&1 || tail -n 30 "$O/phases.log"
  grep -v USDT "$O/phases.log" | tail -n 16
  ;;
serve)  # the server as deployed on the card after the sync-free change (bench/serve_smoke.py: determinism, batching)
  card | tee "$O/card.txt"
  timeout 300 $PY -m bench.serve_smoke "$O" 2>&1 | tail -n 5
  ;;
*) echo "usage: $0 prepare WHEEL_DIR | latency | serve" >&2; exit 2 ;;
esac
