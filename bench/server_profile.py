"""A CPU profile of this process while a load runs: what bounds a server that is not GPU-bound.

    with ServerProfile(out_dir, "sd_turbo_bytes-jpeg") as profile:
        ...  # the HTTP load, served by uvicorn + the engine in this process
    profile.summary  # small dict; out_dir/profile_<name>.txt holds the top-40 tables

Three views of the same window, each cheap for the profiled process:
- per-thread CPU seconds from /proc/self/task/<tid>/stat (the engine thread, uvicorn's event
  loop, the encoder pool, torch's and CUDA's own threads), as a share of one core;
- stack samples: py-spy (https://github.com/benfred/py-spy) attached to this process in
  non-blocking mode (it reads the interpreter's memory from outside; no pause, no GIL taken),
  once for every thread's on-CPU stacks and once with --gil (only the thread holding the GIL:
  the share of time the GIL is held, and by whom). This process first allows any process to
  trace it (prctl PR_SET_PTRACER, for Yama's ptrace_scope 1, where only an ancestor may attach).
  When py-spy is missing or cannot attach, a sampler thread of this process walks
  sys._current_frames() instead (it takes the GIL 200 times a second, so it perturbs a little,
  and it cannot tell a thread waiting in C from one computing: waits are filtered by name);
- GPU utilisation from nvidia-smi at 200 ms, when there is one.
The summary is small (top-40 functions by self and inclusive samples); no trace is kept.
"""

from __future__ import annotations

import collections
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Self

RATE_HZ = 200
TOP_N = 40
# leaf functions of a thread that waits (for work, a lock, the network, the GPU): not on-CPU
WAITING = {"wait", "select", "poll", "epoll", "sleep", "acquire", "get", "_wait_for_tstate_lock", "result", "join",
           "synchronize", "accept", "recv", "recv_into", "_worker", "run_forever"}
# ... and by (function, file): uvloop's event loop is C, so an idle uvicorn thread's Python leaf is asyncio.run's
WAITING_IN = {("run", "runners.py"), ("run_until_complete", "base_events.py")}


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """{native thread id: (comm, CPU seconds)} of every thread of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
    return found


def _py_spy() -> str | None:
    """The py-spy executable: $PY_SPY, on PATH, or a bin/ beside a sys.path entry (pip --target)."""
    candidates = [os.environ.get("PY_SPY", ""), shutil.which("py-spy") or ""]
    candidates += [str(Path(p) / "bin" / "py-spy") for p in sys.path if p]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _allow_any_tracer() -> None:
    """Yama ptrace_scope 1 lets only ancestors attach; declare any process a permitted tracer."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(0x59616D61, ctypes.c_ulong(-1 & 0xFFFFFFFFFFFFFFFF), 0, 0, 0)  # PR_SET_PTRACER, PR_SET_PTRACER_ANY
    except (OSError, AttributeError):
        pass


def _function(frame: str) -> str:
    """py-spy's 'name (file.py:123)' or ours without the line number: one entry per function."""
    return re.sub(r":\d+\)$", ")", frame.strip())


class ServerProfile:
    """Profiles this process between __enter__ and __exit__; see the module docstring."""

    def __init__(self, out_dir: Path, name: str, rate_hz: int = RATE_HZ) -> None:
        self.out_dir, self.name, self.rate_hz = out_dir, name, rate_hz
        self.summary: dict[str, Any] = {"name": name}
        self._spies: dict[str, tuple[subprocess.Popen, Path]] = {}
        self._samples: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._smi: subprocess.Popen | None = None

    # -- start / stop -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._cpu0 = _thread_cpu()
        self._process0 = time.process_time()
        exe = _py_spy()
        if exe:
            _allow_any_tracer()
            for view, extra in (("all", []), ("gil", ["--gil"])):
                path = self.out_dir / f".pyspy_{self.name}_{view}.txt"
                cmd = [exe, "record", "--pid", str(os.getpid()), "--rate", str(self.rate_hz), "--format", "raw",
                       "--threads", "--nonblocking", "--duration", "3600", "--output", str(path), *extra]
                self._spies[view] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), path)
            time.sleep(1.5)  # an attach failure shows as an early exit
            failed = {v: p for v, (p, _) in self._spies.items() if p.poll() is not None}
            if failed:  # keep a view that attached (--gil needs more of the interpreter's layout than stacks)
                self.summary["py_spy_error"] = " | ".join(f"{v}: {p.stdout.read()[-300:]}" for v, p in failed.items() if p.stdout)
                self._spies = {v: spy for v, spy in self._spies.items() if v not in failed}
        else:
            self.summary["py_spy_error"] = "no py-spy executable (PY_SPY, PATH, <sys.path>/bin)"
        if not self._spies:
            self._sampler = threading.Thread(target=self._sample, name="bench-sampler", daemon=True)
            self._sampler.start()
        if shutil.which("nvidia-smi"):
            self._smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall_s = time.monotonic() - self._t0
        cpu1 = _thread_cpu()
        process_cpu_s = time.process_time() - self._process0
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=5)
        self._stop_spies()
        gpu = self._stop_smi()
        names = {t.native_id: t.name for t in threading.enumerate()}
        idents = {t.ident: t.name for t in threading.enumerate()}
        threads = []
        for tid, (comm, cpu) in cpu1.items():
            used = cpu - self._cpu0.get(tid, (comm, 0.0))[1]
            if used > 0.01 * wall_s:
                threads.append({"thread": names.get(tid, comm), "tid": tid, "cpu_s": round(used, 2),
                                "core_share": round(used / wall_s, 3)})
        threads.sort(key=lambda t: -t["cpu_s"])
        self.summary.update(wall_s=round(wall_s, 2), process_cpu_s=round(process_cpu_s, 2),
                            process_cores=round(process_cpu_s / wall_s, 2), threads=threads[:12])
        if gpu:
            self.summary["gpu_util_mean_pct"] = round(sum(gpu) / len(gpu), 1)
            self.summary["gpu_util_samples"] = len(gpu)
        views: dict[str, collections.Counter[tuple[str, ...]]] = {}
        if self._spies:
            self.summary["sampler"] = f"py-spy --nonblocking at {self.rate_hz} Hz"
            for view, (_, path) in self._spies.items():
                views[view] = self._read_raw(path, idents)
                path.unlink(missing_ok=True)
        else:
            self.summary["sampler"] = f"sys._current_frames at {self.rate_hz} Hz (on-CPU guessed by leaf name)"
            views["all"] = self._samples
        lines = [f"# CPU profile of the server process: {self.name}", f"# {self.summary}", ""]
        for view, samples in views.items():
            total = sum(samples.values())
            expected = wall_s * self.rate_hz
            self.summary[f"{view}_samples"] = total
            if view == "gil":
                self.summary["gil_held_share"] = round(total / expected, 3) if expected else None
            per_thread: collections.Counter[str] = collections.Counter()
            for stack, n in samples.items():
                per_thread[stack[0]] += n
            self.summary[f"{view}_threads"] = {t: round(n / expected, 3) for t, n in per_thread.most_common(8)}
            lines += self._tables(view, samples, expected)
        self.summary["top_self"] = self._top_self(views.get("gil") or views.get("all") or collections.Counter(), 15)
        (self.out_dir / f"profile_{self.name}.txt").write_text("\n".join(lines) + "\n")

    def _stop_spies(self) -> None:
        for proc, _ in self._spies.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for proc, _ in self._spies.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _stop_smi(self) -> list[float]:
        if self._smi is None:
            return []
        self._smi.terminate()
        out, _ = self._smi.communicate(timeout=10)
        return [float(x) for x in out.split() if x.replace(".", "", 1).isdigit()]

    # -- sampling and reading -----------------------------------------------------------------

    def _sample(self) -> None:
        """The fallback: every thread's Python stack, `rate_hz` times a second, waiting leaves dropped."""
        me = threading.get_ident()
        period = 1.0 / self.rate_hz
        while not self._stop.wait(period):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                code = frame.f_code
                if ident == me or code.co_name in WAITING or (code.co_name, Path(code.co_filename).name) in WAITING_IN:
                    continue
                stack: list[str] = []
                f: FrameType | None = frame
                while f is not None and len(stack) < 64:
                    stack.append(f"{f.f_code.co_name} ({Path(f.f_code.co_filename).name})")
                    f = f.f_back
                self._samples[(names.get(ident, hex(ident)), *reversed(stack))] += 1

    @staticmethod
    def _read_raw(path: Path, idents: dict[int | None, str]) -> collections.Counter[tuple[str, ...]]:
        """py-spy's raw (collapsed) output: 'thread (TID): NAME;frame;...;leaf COUNT' per line (older
        py-spy versions: 'thread (0xIDENT)', named here from threading.enumerate())."""
        samples: collections.Counter[tuple[str, ...]] = collections.Counter()
        if not path.exists():
            return samples
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            if not frames[0].startswith("thread"):
                frames.insert(0, "?")
            elif match := re.fullmatch(r"thread \((0x[0-9a-fA-F]+)\)", frames[0]):
                frames[0] = idents.get(int(match.group(1), 16), frames[0])
            elif match := re.fullmatch(r"thread \(\d+\): (.+)", frames[0]):
                frames[0] = match.group(1)
            samples[tuple(frames[:1] + [_function(f) for f in frames[1:]])] += int(count)
        return samples

    @staticmethod
    def _top_self(samples: collections.Counter[tuple[str, ...]], n: int) -> list[list[Any]]:
        leaf: collections.Counter[str] = collections.Counter()
        for stack, count in samples.items():
            leaf[stack[-1]] += count
        total = sum(leaf.values()) or 1
        return [[name, round(count / total, 3)] for name, count in leaf.most_common(n)]

    def _tables(self, view: str, samples: collections.Counter[tuple[str, ...]], expected: float) -> list[str]:
        """Per thread, then the top functions by self and by inclusive samples (share of the window)."""
        total = sum(samples.values())
        share = total / expected if expected else 0.0
        lines = [f"## {view}: {total} samples = {share:.2f} of one core (samples / (window x rate))", "",
                 "thread share-of-window"]
        per_thread: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        for stack, count in samples.items():
            per_thread[stack[0]] += count
            for function in set(stack[1:]):
                inclusive[function] += count
        lines += [f"  {thread[:40]:40s} {count / expected:6.3f}" for thread, count in per_thread.most_common(12)]
        lines += ["", f"top {TOP_N} by self samples (share of this view's samples)"]
        lines += [f"  {share:6.3f}  {name[:150]}" for name, share in self._top_self(samples, TOP_N)]
        lines += ["", f"top {TOP_N} by inclusive samples"]
        lines += [f"  {count / (total or 1):6.3f}  {name[:150]}" for name, count in inclusive.most_common(TOP_N)]
        return lines + [""]
