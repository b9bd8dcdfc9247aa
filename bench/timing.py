"""Wall-clock timing of GPU work: synchronised, warmed up, median of repeats."""

from __future__ import annotations

import contextlib
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 3, min_seconds: float = 0.0,
              max_repeats: int = 50) -> float:
    """Median seconds per call of `fn`, after `warmup` untimed calls: at least `repeats` timed calls,
    and more (up to max_repeats) until they add up to `min_seconds`, so that a short call is not
    judged on a second or two of the card's time."""
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    while len(samples) < repeats or (sum(samples) < min_seconds and len(samples) < max_repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def card_name() -> str:
    """The GPU's name as nvidia-smi prints it (falls back to torch's name)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor()."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def matmul_ceiling_tflops(n: int = 8192, repeats: int = 10) -> float:
    """Dense bf16 n^3 matrix product rate measured now, in TFLOP/s."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    seconds = time_call(lambda: a @ b, warmup=3, repeats=repeats)
    return 2 * n**3 / seconds / 1e12
