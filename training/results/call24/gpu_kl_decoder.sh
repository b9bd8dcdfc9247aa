#!/bin/bash
# Call 24's last GPU work: the bundled model's KL decoder fine-tuned further on the card (training/vae_decoder.py,
# encoder frozen, so every UNet, student, ControlNet and classifier stays valid), after the tiny decoder trained
# with the same loss for 118 s reconstructed better for the judge (0.955 of captions) than the shipped KL decoder
# (0.919). Two uploads on one machine, within the 30 s idle release:
#   code-only tree (gpu_checks.sh's regex); carry runs/whl:   bash training/results/call24/gpu_kl_decoder.sh wheels
#   default slim tree; carry runs/turbo24:                    KL_S=180 bash training/results/call24/gpu_kl_decoder.sh run
# run: the fine-tune from the shipped decoder (RUN = runs/kl: autoencoder/ = the shipped VAE, judge/ = the shipped
# judge), exported fp16 to $OUT/vae; then bench/tiny_decoder_quality.py with the new KL decoder (its "kl" column)
# on the teacher and the one-step student, the same captions and seeds as call 24's run with the shipped one.
set -u -o pipefail
export PYTHONPATH=$PWD/runs/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-runs/out}; mkdir -p "$OUT"
case ${1:-} in
wheels)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site runs/whl/*.whl || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  ;;
run)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
  mkdir -p runs/kl/autoencoder runs/kl/judge
  cp weights/bundled/vae/diffusion_pytorch_model.safetensors runs/kl/autoencoder/vae.safetensors
  cp weights/judge/judge.safetensors runs/kl/judge/judge.safetensors
  python3 -m training.vae_decoder --out runs/kl --seconds "${KL_S:-180}" --device cuda --export "$OUT" \
    > "$OUT/vae_decoder.log" 2>&1 || tail -n 20 "$OUT/vae_decoder.log"
  tail -n 1 "$OUT/vae_decoder.log" | cut -c1-1500
  mkdir -p runs/w25 && cp -r weights/bundled weights/judge weights/bundled_tiny_vae runs/turbo24/bundled_turbo runs/w25/
  cp "$OUT"/vae/* runs/w25/bundled/vae/
  for n in text_encoder tokenizer vae; do ln -sfn "../bundled/$n" "runs/w25/bundled_turbo/$n"; done
  DARKROOM_WEIGHTS_ROOT=runs/w25 python3 -m bench.tiny_decoder_quality --device cuda --out "$OUT/gpu_kl_decoder_quality.json" \
    > "$OUT/kl_quality.log" 2>&1 || tail -n 20 "$OUT/kl_quality.log"
  tail -n 8 "$OUT/kl_quality.log"
  ;;
*) echo "usage: $0 wheels | run" >&2; exit 2 ;;
esac
