#!/bin/bash
# Call 33 (GPU, issue 6; session 33): the shipped teacher and call 31's one-step student on the card after the
# tokenizer's fast path (pipelines.text.clip_token_ids) and the unguided call's single encoding (eval.encode_prompts).
# Steps, on one machine of kind nvidia-h200, in two calls (the weights and the wheels together pass the 64 MiB a
# call sends), each within the machine's 30 s idle release:
#   (code-only tree)    bash training/results/call33/gpu_latency33.sh prepare runs/whl   # carry runs/whl
#   (weights tree)      bash training/results/call33/gpu_latency33.sh latency            # -> $OUT
# The trees: as call 32's (training/results/call32/gpu_latency32.sh).
# latency: training.students_eval --latency-only (each lever in turn; students_latency.json, latency.log), then
# bench.phases (phases.json, phases_profiles.txt), each under a time limit: the session had 312 s of device time left.
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
latency_settings 33
case ${1:-} in
prepare) prepare_card "${2:-}" || exit 1 ;;
latency)
  card | tee "$O/card.txt"
  timeout "${EVAL_S:-150}" $PY -m training.students_eval --weights weights --manifest weights_manifest.yaml --out "$O" \
    --latency-only --models bundled-turbo > "$O/latency.log" 2>&1 || tail -n 20 "$O/latency.log"
  grep " ms " "$O/latency.log"
  timeout "${PHASES_S:-90}" $PY -m bench.phases --out "$O" --reps "${PHASES_REPS:-30}" > "$O/phases.log" 2>&1 \
    || tail -n 30 "$O/phases.log"
  grep -v USDT "$O/phases.log" | tail -n 16
  ;;
*) echo "usage: $0 prepare WHEEL_DIR | latency" >&2; exit 2 ;;
esac
