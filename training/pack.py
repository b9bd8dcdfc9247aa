"""Pack a run directory for transfer: fp16 weights, state, plots and logs in <= 15 MiB parts.

    python -m training.pack RUN_DIR DEST_DIR [a,b]  # writes DEST_DIR/run.tar.partNN (only a, b if given)
    cat DEST_DIR/run.tar.part* | tar -x -C RUN_DIR  # to unpack

Optimizer states and raw (non-EMA) weights of stages that keep an EMA are left out, so a
packed run resumes from its EMA weights with a fresh optimizer.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

from safetensors.torch import load_file, save

PART_BYTES = 15 * 1024 * 1024
SKIP = {"optimizer.pt", "text_unet.safetensors", "student.safetensors"}


def pack(run: Path, dest: Path, only: list[str] | None = None) -> list[Path]:
    """Write the tar parts (only the top-level entries in `only`, when given); returns their paths."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(run.rglob("*")):
            if not path.is_file() or path.name in SKIP:
                continue
            name = str(path.relative_to(run))
            if only is not None and name.split("/")[0] not in only:
                continue
            if path.suffix == ".safetensors":
                state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
                data = save(state)
            else:
                data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(raw), PART_BYTES):
        part = dest / f"run.tar.part{i // PART_BYTES:02d}"
        part.write_bytes(raw[i : i + PART_BYTES])
        parts.append(part)
    return parts


if __name__ == "__main__":
    for p in pack(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",") if len(sys.argv) > 3 else None):
        print(p, p.stat().st_size)
