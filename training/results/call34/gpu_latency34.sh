#!/bin/bash
# Call 34's first step (GPU, issue 6; session 34): the shipped teacher and call 31's one-step student on one card, with
# each model's own (KL) decoder and again with its tiny decoder (fast mode, `training.students_eval --decoder tiny`):
# judge accuracy and FID on 2,048 + 2,048 captions (fp16), and latency at batch 1 through every CUDA lever and batched
# at 256 eager and with the engine's CUDA defaults (`latency_batched_text_s`, not yet run on a card).
# Steps, on one machine of kind nvidia-h200, each within the machine's 30 s idle release:
#   (code-only tree)    bash training/results/call34/gpu_latency34.sh prepare runs/whl   # carry runs/whl
#   (weights tree)      bash training/results/call34/gpu_latency34.sh latency            # -> $OUT
# or, on a later machine, `latency_only` in place of `latency`: the latency rows only, both decoders.
# then the training steps of gpu_call34.sh on the same machine. The code-only tree: as gpu_call34.sh's. The weights
# tree: bash tools/device_tree.sh slim '^bench/[^/]*$|^pipelines/|^server/|^weights/bundled/|^weights/bundled_turbo/|
#   ^weights/bundled_tiny_vae/|^weights/judge/|^weights_manifest.yaml$|^training/[a-z_]*\.(py|sh|json)$|
#   ^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$' (one line).
set -u -o pipefail
# shellcheck source=training/gpu_call.sh
. training/gpu_call.sh
latency_settings 34
case ${1:-} in
prepare) prepare_card "${2:-}" || exit 1 ;;
latency)
  card | tee "$O/card.txt"
  for dec in full tiny; do
    timeout "${EVAL_S:-200}" $PY -m training.students_eval --weights weights --manifest weights_manifest.yaml \
      --out "$O/$dec" --captions "${CAPTIONS:-2048}" --models bundled-turbo --decoder $dec > "$O/$dec.log" 2>&1 \
      || tail -n 20 "$O/$dec.log"
    echo "== decoder $dec"; cat "$O/$dec/students_eval.md"
    $PY -c 'import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    print(r["name"], {k: round(v * 1000, 3) if k.endswith("_s") else round(v, 2) for k, v in r.items()
                      if k.startswith(("latency_", "speedup_")) and isinstance(v, float)})' "$O/$dec/students_eval.json"
  done
  ;;
latency_only)  # session 34's second machine, after the tokenizer's letters-and-commas path: latency only, both decoders
  card | tee "$O/card.txt"
  for dec in full tiny; do
    timeout "${EVAL_S:-150}" $PY -m training.students_eval --weights weights --manifest weights_manifest.yaml \
      --out "$O/$dec" --latency-only --models bundled-turbo --decoder $dec > "$O/$dec.log" 2>&1 || tail -n 20 "$O/$dec.log"
    echo "== decoder $dec"; grep -E "^(teacher|one-step)" "$O/$dec.log"
  done
  ;;
*) echo "usage: $0 prepare WHEEL_DIR | latency | latency_only" >&2; exit 2 ;;
esac
