#!/usr/bin/env bash
# Build the Dockerfile and run the image without a Docker engine: buildah (chroot isolation,
# vfs storage), as root. Opt-in (several GB of downloads, ~10 minutes), not part of `make test`:
#   sudo tests/deploy/daemonless_build.sh            # needs: apt-get install buildah debootstrap
#
# With no registry access, the CUDA base image is replaced by a stand-in: Debian bookworm
# (debootstrap) plus this machine's extra CA certificates, so apt and pip work behind an
# intercepting proxy. Everything after FROM is the real Dockerfile. The script then starts the
# image's entry point, runs its HEALTHCHECK command and the compose healthcheck inside the
# container, generates an image over HTTP from the host, and checks that SIGTERM drains.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${DARKROOM_BUILD_WORK:-/tmp/darkroom-daemonless}"
PORT="${DARKROOM_TEST_PORT:-18777}"
# download.pytorch.org may be unreachable where this runs; PyPI's torch then stands in.
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://pypi.org/simple}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"  # needs PyYAML
B=(buildah --storage-driver vfs)
BASE=localhost/darkroom-base-standin
IMAGE=localhost/darkroom:daemonless

for tool in buildah debootstrap curl; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 0; }
done
mkdir -p "$WORK"

if ! "${B[@]}" inspect "$BASE" >/dev/null 2>&1; then
    [ -d "$WORK/rootfs/usr" ] || debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian
    mkdir -p "$WORK/base/certs"
    tar -C "$WORK/rootfs" -cf "$WORK/base/rootfs.tar" .
    cp /usr/local/share/ca-certificates/*.crt "$WORK/base/certs/" 2>/dev/null || true
    cat > "$WORK/base/Dockerfile" <<'EOF'
FROM scratch
ADD rootfs.tar /
COPY certs/ /usr/local/share/ca-certificates/
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EOF
    "${B[@]}" bud --isolation chroot -t "$BASE" "$WORK/base"
fi

# The committed tree is the build context, as in a clean clone. DARKROOM_REUSE_IMAGE=1 skips
# the build when the image exists (to re-run only the checks below).
if [ "${DARKROOM_REUSE_IMAGE:-0}" != 1 ] || ! "${B[@]}" inspect "$IMAGE" >/dev/null 2>&1; then
    rm -rf "$WORK/context" && mkdir -p "$WORK/context"
    git -C "$ROOT" archive HEAD | tar -x -C "$WORK/context"
    "${B[@]}" bud --isolation chroot --format docker \
        --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_INDEX_URL="$TORCH_INDEX_URL" \
        -t "$IMAGE" -f "$WORK/context/Dockerfile" "$WORK/context"
fi

CTR="$("${B[@]}" from "$IMAGE")"
cleanup() { "${B[@]}" rm "$CTR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${B[@]}" config --env "DARKROOM_PORT=$PORT" "$CTR"
config="$("${B[@]}" inspect "$IMAGE")"
mapfile -t entrypoint < <("$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)["Docker"]["config"]["Entrypoint"]))' <<<"$config")
mapfile -t healthcheck < <("$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)["Docker"]["config"]["Healthcheck"]["Test"][1:]))' <<<"$config")
mapfile -t readiness < <("$PY" -c 'import sys,yaml; print("\n".join(yaml.safe_load(open(sys.argv[1]))["x-darkroom"]["healthcheck"]["test"][1:]))' "$ROOT/docker-compose.yml")

"${B[@]}" run --isolation chroot "$CTR" -- "${entrypoint[@]}" > "$WORK/serve.log" 2>&1 &
for _ in $(seq 1 120); do
    curl -sf -m 2 "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 2
done
curl -sf "http://127.0.0.1:$PORT/readyz" || { echo "FAIL: not ready"; tail -30 "$WORK/serve.log"; exit 1; }
echo
"${B[@]}" run --isolation chroot "$CTR" -- "${healthcheck[@]}" && echo "OK: Dockerfile HEALTHCHECK"
"${B[@]}" run --isolation chroot "$CTR" -- "${readiness[@]}" && echo "OK: compose healthcheck"
[ "$("${B[@]}" run --isolation chroot "$CTR" -- id -u)" = 10001 ] && echo "OK: runs as uid 10001"
# torch.compile's run-time needs (the compiled UNet is on in docker-compose.yml): the cache volume
# writable by the user, and a C compiler with Python's headers to build Triton's launcher
"${B[@]}" run --isolation chroot "$CTR" -- bash -c 'test -w "$TORCHINDUCTOR_CACHE_DIR/.." && mkdir -p "$TRITON_CACHE_DIR" &&
  printf "#include <Python.h>\nint main(void) { return PY_MAJOR_VERSION == 3 ? 0 : 1; }\n" > /tmp/t.c &&
  gcc -I"$(python -c "import sysconfig; print(sysconfig.get_paths()[\"include\"])")" /tmp/t.c -o /tmp/t && /tmp/t' \
  && echo "OK: /cache writable by the user; gcc builds against Python.h"
curl -sf "http://127.0.0.1:$PORT/generate" -H 'Content-Type: application/json' -H 'Accept: image/png' \
    -d '{"prompt": "a small red circle left of a blue square", "seed": 1}' -o "$WORK/out.png"
"$PY" -c 'import sys; d=open(sys.argv[1],"rb").read(); assert d[:8]==b"\x89PNG\r\n\x1a\n"; print("OK: /generate PNG,", len(d), "bytes")' "$WORK/out.png"

# The server's pid: the `darkroom serve` process whose environment holds this run's port.
pid=""
for candidate in $(pgrep -f "darkroom serve" || true); do
    if tr '\0' '\n' < "/proc/$candidate/environ" 2>/dev/null | grep -qx "DARKROOM_PORT=$PORT"; then
        pid="$candidate"
    fi
done
[ -n "$pid" ] || { echo "FAIL: no server process found"; exit 1; }
[ "$(stat -c %u "/proc/$pid")" = 10001 ] && echo "OK: the server process runs as uid 10001 (pid $pid)"
kill -TERM "$pid"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if grep -q "Application shutdown complete" "$WORK/serve.log"; then
    echo "OK: SIGTERM drained and exited"
else
    echo "FAIL: no graceful shutdown"; tail -20 "$WORK/serve.log"; exit 1
fi
