#!/bin/bash
# The Python packages the GPU machine lacks, as wheels for its Python 3.12 (x86-64), into DEST: carry DEST in
# the call that installs them (training/gpu_call.sh install_wheels, bench/run6.sh). A new checkout has no ignored
# folders, so each session downloads them again (12 MB, about a minute). The versions are pinned to the ones the
# card ran with on 2026-11-27 (fastapi 0.165 imports opentelemetry and
# annotated_doc: without them the bench's HTTP runs fail) beside its own torch 2.11, transformers 5.17.0 and huggingface_hub 1.33.0.
#   bash tools/device_wheels.sh runs/whl                  # training calls and the bench (.whl for bench/run6.sh)
#   bash tools/device_wheels.sh .whl_e py-spy==0.4.3      # DEST and extra packages only: the bench's profiler
set -eu
DEST=${1:?device_wheels.sh DEST [PACKAGE==VERSION...]}
shift
PINNED=(diffusers==0.42.1 importlib_metadata==10.2.0 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
  pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 typing-inspection==0.4.5
  annotated-types==0.8.0 fastapi==0.165.0 annotated-doc==0.0.7 opentelemetry-api==1.45.2 starlette==1.10.0
  sse-starlette==3.7.0 uvicorn==0.54.0)
[ $# -gt 0 ] && PINNED=("$@")
mkdir -p "$DEST"
for package in "${PINNED[@]}"; do  # one at a time: --no-deps, and pip matches each platform tag exactly
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "$package"
done
ls "$DEST"; du -sh "$DEST"
