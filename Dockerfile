# syntax=docker/dockerfile:1
# Darkroom on one GPU: `docker compose up` (docker-compose.yml) or
#   docker build -t darkroom . && docker run --gpus all --stop-timeout 100 -p 8000:8000 -v darkroom-weights:/weights darkroom
# The base image brings the CUDA runtime and the driver hooks the NVIDIA container toolkit
# expects; the torch wheel brings its own CUDA libraries (cuBLAS, cuDNN), so the base needs no cuDNN.
ARG BASE_IMAGE=docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

# torch built for the base image's CUDA (12.8: host driver >= 570). PyPI's default torch may be
# built for a newer CUDA that older drivers cannot run. Change both together.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04 ships Python 3.12; the project needs >= 3.10. gcc, libc6-dev and python3-dev:
# torch.compile (the compiled UNet and VAE decoder) builds Triton's small C launcher at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && groupadd --system --gid 10001 darkroom \
    && useradd --system --uid 10001 --gid darkroom --create-home --home-dir /home/darkroom darkroom \
    && mkdir -p /weights /cache \
    && chown darkroom:darkroom /weights /cache

WORKDIR /app

# Dependency layer: rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Source layer: the package itself, no dependency resolution.
COPY README.md ./
COPY pipelines ./pipelines
COPY server ./server
COPY training ./training
COPY weights_manifest.yaml ./
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import server.cli"

# The weights root. The committed models (the bundled stack, weights/bundled*) ship in the image
# under /weights; a named volume mounted here starts as a copy of them, and other checkpoints
# are pulled into the volume (`darkroom weights pull ID`). A bind mount replaces it: give it the
# bundled folders too. .dockerignore keeps locally pulled checkpoints out of the image.
COPY --chown=10001:10001 weights /weights
VOLUME ["/weights"]
ENV DARKROOM_WEIGHTS_ROOT=/weights \
    DARKROOM_PORT=8000 \
    TORCHINDUCTOR_CACHE_DIR=/cache/inductor \
    TRITON_CACHE_DIR=/cache/triton
# torch.compile's caches: on a volume, a restarted server's warm-up reuses the compiled kernels.
VOLUME ["/cache"]

USER 10001:10001
EXPOSE 8000

# Liveness only: /readyz (models loaded, not draining) is the orchestrator's readiness probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DARKROOM_PORT', '8000'), timeout=4)"]

# uvicorn handles SIGTERM: /readyz turns 503 and in-flight work drains (compose: stop_grace_period).
STOPSIGNAL SIGTERM
# The port comes from DARKROOM_PORT (Settings), which the healthchecks read too.
ENTRYPOINT ["darkroom", "serve", "--host", "0.0.0.0"]
