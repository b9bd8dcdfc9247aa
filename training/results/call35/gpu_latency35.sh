#!/bin/bash
# Call 35's last step (GPU, issue 6; session 35), with the device time the training left: the shipped teacher and
# one-step student at batch 1 with the UNet compiled inside its CUDA graphs (settings.compile_unet, which
# docker-compose.yml turns on), beside the best stage measured before (text graphs, decoder compiled + graphs), on
# the same card. Call 32's profile (training/results/call32/card_syncfree_pinned/phases_profiles.txt) puts the
# student's batch-1 host time in its three graph launches; a compiled UNet has fewer, fused kernels per graph.
# Steps, on one machine of kind nvidia-h200, each within the machine's 30 s idle release:
#   (code-only tree)    bash training/results/call35/gpu_latency35.sh prepare runs/whl   # carry runs/whl
#   (weights tree)      bash training/results/call35/gpu_latency35.sh compiled           # -> $OUT
# The trees: as call 34's (gpu_latency34.sh).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
latency_settings 35
case ${1:-} in
prepare) prepare_card "${2:-}" || exit 1 ;;
compiled)
  card | tee "$O/card.txt"
  timeout "${EVAL_S:-230}" $PY -m training.students_eval --weights weights --manifest weights_manifest.yaml --out "$O" \
    --latency-only --models bundled-turbo --latency-reps 10 --cuda-stages text_vaecompilegraphs compiled 2>&1 \
    | grep -v Warning | tee "$O/compiled.log" | grep -E "^(text_vaecompilegraphs|compiled|teacher|one-step)"
  ;;
*) echo "usage: $0 prepare WHEEL_DIR | compiled" >&2; exit 2 ;;
esac
