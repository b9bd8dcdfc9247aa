"""xformers attention on the bare SD1.5 UNet, in its own process (`python -m bench.gpu` runs it).

diffusers imports xformers when it is installed, at its own import time; a wheel that does not
fit this torch / CUDA could then break every other measurement. So the wheel (in
.whl_e/optional/) is installed into a separate folder and measured here, in a child process,
against the default SDPA attention of the same UNet; the records are printed as one JSON line.

    python -m bench.xformers_probe --ceiling 770
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ceiling", type=float, required=True, help="matmul ceiling of this card, TFLOP/s")
    args = parser.parse_args()
    from bench.arch import build
    from bench.levers import measure_xformers

    arch = build("sd15")
    records = measure_xformers("sd15", arch.unet, arch.config, 64, [2, 32], 401.6, args.ceiling)
    print("RECORDS " + json.dumps(records), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
