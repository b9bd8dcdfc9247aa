"""Call 3: resume the text encoder + UNet (training.text_unet) with the training forward optionally
compiled by torch.compile after an eager timing window, and ms/step printed every 100 steps.

    PYTHONPATH=. python3 training/results/call3/train_compiled.py --out RUN --seconds S [--compile]

Only TextUNet.eps (the training forward) is wrapped; sampling and eval stay eager.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from training import text_unet

EAGER_STEPS = 100  # steps 20-100 time the eager forward + backward on the same card
WINDOW = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    eager = text_unet.TextUNet.eps
    clock = {"calls": 0, "t20": 0.0, "window": 0.0}
    compiled: dict[int, object] = {}

    def eps(self: text_unet.TextUNet, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n = clock["calls"]
        clock["calls"] = n + 1
        now = time.monotonic()
        if n == 20:
            clock["t20"] = now
        if n == EAGER_STEPS:
            print(f"[call3] eager steps 20-{EAGER_STEPS}: {(now - clock['t20']) * 1e3 / (EAGER_STEPS - 20):.1f} ms/step", flush=True)
        if n > EAGER_STEPS and n % WINDOW == 0:
            label = "compiled" if args.compile else "eager"
            print(f"[call3] {label} steps {n - WINDOW}-{n}: {(now - clock['window']) * 1e3 / WINDOW:.1f} ms/step", flush=True)
        if n % WINDOW == 0:
            clock["window"] = now
        if args.compile and n >= EAGER_STEPS:
            if id(self) not in compiled:
                print("[call3] compiling the training forward", flush=True)
                compiled[id(self)] = torch.compile(eager.__get__(self))
            return compiled[id(self)](x, t, tokens)  # type: ignore[operator]
        return eager(self, x, t, tokens)

    text_unet.TextUNet.eps = eps  # type: ignore[method-assign]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print("text_unet", text_unet.train(args.out, args.seconds, device), f"steps timed: {clock['calls']}", flush=True)


if __name__ == "__main__":
    main()
