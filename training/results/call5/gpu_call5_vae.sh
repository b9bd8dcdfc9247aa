#!/bin/bash
# Call 5a (GPU): fine-tune the VAE decoder (encoder frozen: the latent space, the UNet and its
# students stay valid), install it into weights/bundled on the machine, and re-run the full
# `darkroom eval` grid of the call-4 teacher with the new decoder. RUN stays in runs/ for call 5b.
#   bash training/results/call5/gpu_call5_vae.sh SECONDS
set -u
RUN=runs/run5; E=runs/e5
export PYTHONUNBUFFERED=1
log() { echo "[call5a $(date +%H:%M:%S)] $*"; }
rm -rf $RUN $E; mkdir -p $RUN $E
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $E/card.txt
python3 -m training.export --import weights $RUN > $E/import.log 2>&1 || { cat $E/import.log; exit 1; }
log "decoder fine-tune for $1 s"
python3 -m training.vae_decoder --out $RUN --seconds "$1" --export $E 2>&1 | grep -v Warning | tee $E/vae_decoder.log | tail -n 2
cp $RUN/vae_decoder/vae.safetensors $RUN/autoencoder/vae.safetensors  # later stages read the new decoder
cp $E/vae/diffusion_pytorch_model.safetensors weights/bundled/vae/
python3 - <<'PY'
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
python3 -m server.cli weights verify bundled | grep -v ": ok" | tail -n 3
log "eval grid with the new decoder"
timeout 240 python3 -m server.cli eval --model bundled --captions 512 --out $E/eval > $E/eval.log 2>&1; tail -n 2 $E/eval.log
head -n 12 $E/eval/eval.md
cp $RUN/vae_decoder/state.json $E/vae_decoder_state.json; cp $RUN/vae_decoder/loss.png $E/vae_decoder_loss.png
cp $E/vae/diffusion_pytorch_model.safetensors $OUT/vae.safetensors
tar -czf $OUT/results5a.tar.gz -C $E card.txt vae_decoder.log vae_decoder_state.json vae_decoder_loss.png eval.log eval
ls -l $OUT; log done
