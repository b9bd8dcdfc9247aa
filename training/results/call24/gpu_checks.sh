#!/bin/bash
# Call 24's GPU checks (this session's second and third device calls; bench run 13 came first): the server as
# deployed on a GPU, the text encoder and decoder levers, the tiny decoder. Two uploads on one machine, within the
# 30 s idle release:
#   bash tools/device_tree.sh slim CODE_ONLY_REGEX (gpu_call21.sh's, plus ^tests/); carry runs/whl, runs/whl_t:
#                             bash training/results/call24/gpu_checks.sh wheels
#     installs the wheels into runs/site, then the CUDA tests: tests/test_text_graphs.py, tests/pipelines/test_accel.py,
#     tests/test_tiny_decoder_api.py (the decoder lever around AutoencoderTiny's decoder, graphs and compile)
#   unslim; slim with the default regex plus weights/bundled_tiny_vae; carry runs/turbo24 (the shipped bundled_turbo):
#                             bash training/results/call24/gpu_checks.sh check
#     the bundled tiny decoder trained on the card (training/tiny_decoder.py, TINY_S seconds) and its quality cost
#     (bench/tiny_decoder_quality.py), students_eval --latency-only (teacher and one-step student at batch 1, each lever added in turn, last the
#     decoder as CUDA graphs instead of compiled), then bench/serve_smoke.py (darkroom serve with its CUDA defaults).
# Then, each after `wheels` on a fresh machine (one-chip machines release after 30 s idle):
#   default slim tree; carry runs/turbo24:   KL_S=180 bash training/results/call24/gpu_checks.sh kl
#     the bundled KL decoder fine-tuned further on the card (training/vae_decoder.py, encoder frozen: every UNet, student,
#     ControlNet and classifier stays valid; RUN = runs/kl from the shipped VAE and judge), exported fp16 to $OUT/vae,
#     then bench/tiny_decoder_quality.py with it as the "kl" column. The manifest names the shipped file's sha256, so
#     the loader refused the new one in call 24's first try; the step now patches the card's copy of the manifest.
#   default slim tree:                       bash training/results/call24/gpu_checks.sh invariance
#     bench/serve_smoke.py as is, then with DARKROOM_BATCH_INVARIANT=true.
set -u -o pipefail
export PYTHONPATH=$PWD/runs/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}; mkdir -p "$OUT"
case ${1:-} in
wheels)
  for w in runs/whl runs/whl_t; do
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site "$w"/*.whl || exit 1
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  python3 -m pytest -q -p no:cacheprovider -rs tests/test_text_graphs.py tests/pipelines/test_accel.py \
    tests/test_tiny_decoder_api.py 2>&1 | tail -n 12 | tee "$OUT/pytest.txt"
  ;;
check)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  # the bundled model's tiny decoder, trained here (a CPU run reached only a few hundred steps), exported fp16
  python3 -m training.tiny_decoder --out runs/tvae --seconds "${TINY_S:-150}" --device cuda --export weights/bundled_tiny_vae \
    > "$OUT/tiny_decoder.log" 2>&1 || tail -n 20 "$OUT/tiny_decoder.log"
  tail -n 2 "$OUT/tiny_decoder.log"; cp -r weights/bundled_tiny_vae "$OUT/"
  mkdir -p runs/w24 && cp -r weights/bundled weights/judge weights/bundled_tiny_vae runs/turbo24/bundled_turbo runs/w24/
  for n in text_encoder tokenizer vae; do ln -sfn "../bundled/$n" "runs/w24/bundled_turbo/$n"; done
  DARKROOM_WEIGHTS_ROOT=runs/w24 python3 -m bench.tiny_decoder_quality --device cuda --out "$OUT/gpu_tiny_decoder_quality.json" \
    > "$OUT/tiny_quality.log" 2>&1 || tail -n 20 "$OUT/tiny_quality.log"
  tail -n 8 "$OUT/tiny_quality.log"
  python3 -m training.students_eval --weights runs/w24 --manifest weights_manifest.yaml --out "$OUT/latency" \
    --device cuda --models bundled-turbo --latency-only > "$OUT/latency.log" 2>&1 || tail -n 20 "$OUT/latency.log"
  python3 - "$OUT/latency/students_latency.json" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1]))["rows"]:
    print(row["model"], {k.removeprefix("latency_"): round(v * 1e3, 2) for k, v in row.items() if k.startswith("latency_")})
    print(row["model"], {k: round(v, 1) for k, v in row.items() if k.startswith("speedup_")})
PY
  timeout 300 python3 -m bench.serve_smoke "$OUT/serve" 2>&1 | tail -n 3
  ;;
kl)  # the KL decoder fine-tuned further (encoder frozen), then its quality beside the tiny decoder's
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  mkdir -p runs/kl/autoencoder runs/kl/judge
  cp weights/bundled/vae/diffusion_pytorch_model.safetensors runs/kl/autoencoder/vae.safetensors
  cp weights/judge/judge.safetensors runs/kl/judge/judge.safetensors
  python3 -m training.vae_decoder --out runs/kl --seconds "${KL_S:-180}" --device cuda --export "$OUT" \
    > "$OUT/vae_decoder.log" 2>&1 || tail -n 20 "$OUT/vae_decoder.log"
  tail -n 1 "$OUT/vae_decoder.log" | cut -c1-1500
  mkdir -p runs/w25 && cp -r weights/bundled weights/judge weights/bundled_tiny_vae runs/turbo24/bundled_turbo runs/w25/
  cp "$OUT"/vae/* runs/w25/bundled/vae/
  new=$(sha256sum runs/w25/bundled/vae/diffusion_pytorch_model.safetensors | cut -c1-64)
  old=$(sha256sum weights/bundled/vae/diffusion_pytorch_model.safetensors | cut -c1-64)
  sed -i "s/$old/$new/" weights_manifest.yaml  # the card's copy of the tree only: the entry names the shipped file
  for n in text_encoder tokenizer vae; do ln -sfn "../bundled/$n" "runs/w25/bundled_turbo/$n"; done
  DARKROOM_WEIGHTS_ROOT=runs/w25 python3 -m bench.tiny_decoder_quality --device cuda --tiny-vae runs/w25/bundled_tiny_vae --out "$OUT/gpu_kl_decoder_quality.json" \
    > "$OUT/kl_quality.log" 2>&1 || tail -n 20 "$OUT/kl_quality.log"
  tail -n 8 "$OUT/kl_quality.log"
  ;;
invariance)  # the server smoke twice: as is, and with DARKROOM_BATCH_INVARIANT=true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  for mode in plain invariant; do
    flag=false; [ $mode = invariant ] && flag=true
    DARKROOM_BATCH_INVARIANT=$flag timeout 280 python3 -m bench.serve_smoke "runs/smoke_$mode" > "$OUT/smoke_$mode.log" 2>&1
    echo "$mode: $(tail -n 1 "$OUT/smoke_$mode.log")"
  done
  ;;
*) echo "usage: $0 wheels | check | kl | invariance" >&2; exit 2 ;;
esac
