"""The server's CPU cost per HTTP request, on a tiny model whose forward costs next to nothing.

    python -m bench.http_overhead --variant current                 # all response modes, this tree
    python -m bench.http_overhead --variant before@800d3c9 --variant after   # A/B in one run
    python -m bench.http_overhead --variant current --profile       # the same load under cProfile
    python -m bench.http_overhead --modes raw_jpeg --requests 500 --output /tmp/x.json

A variant is NAME (the working tree), NAME@REV (that commit's server, unpacked with `git
archive` into a temporary directory) or NAME=DIR (a tree on disk). With several variants each
mode runs them in turn, so before and after share one run on one machine.

Each response mode gets a fresh server in a subprocess: the real app (server.app.create_app)
and engine under uvicorn on 127.0.0.1, configured as `darkroom serve` configures it (INFO
logging to a file, no access log). The clients are bench/load.py's closed loop in this
process, so the server's CPU time (utime + stime of its process, from /proc) is its own: CPU
seconds per request = that delta over the measured requests. The request is SD-Turbo's: the
`onestep` sampler, guidance 1 (no uncond rows), 1 step, 8x8 pixels. The model (--model):
`known` (default), the API tests' analytic model (tests/server/known_model.py: closed-form
denoiser, sigmoid "VAE"), whose forward is a few tensor ops, so what is measured is the server
path alone; or `tiny-sd2`, pipelines.tiny's SD2-shaped random model (diffusers UNet, VAE and
CLIP of SD-Turbo's shape, a 4x4 latent), whose modules add ~10 ms of CPU per engine step.

Response modes: JSON with a base64 PNG or JPEG, or the raw image bytes (`Accept: image/png`
or `image/jpeg`). With --profile the server runs under cProfile (every thread: the event
loop, the engine thread, the encoder pool) and the top functions by cumulative and by self
time go to a text file next to the JSON and into the record. Results are appended to the JSON
(bench/results/cpu_http_overhead.json), one record per (variant, mode, profiled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import load
from bench.timing import cpu_model

MODES: dict[str, list[str]] = {
    "json_png": ["--output-format", "png"],
    "json_jpeg": ["--output-format", "jpeg"],
    "raw_png": ["--output-format", "png", "--binary"],
    "raw_jpeg": ["--output-format", "jpeg", "--binary"],
}
SIDE = 8  # pixels: the tiny model's smallest side
DEFAULT_OUTPUT = Path("bench/results/cpu_http_overhead.json")
TOP_N = 30  # functions kept per profile ordering


# ---------------------------------------------------------------------------------------------
# The server side (a subprocess: `python -m bench.http_overhead --serve PORT_FILE`)


def _profile_every_thread() -> list[cProfile.Profile]:
    """A cProfile.Profile per thread started from now on (engine thread, encoder pool) and one
    for this thread; cProfile alone sees only the thread that enabled it."""
    # CPU time of the calling thread, not wall time: a thread waiting for the GIL or for work
    # is not charged, so self times add up to the process's CPU time
    profiles = [cProfile.Profile(time.thread_time)]

    def start(frame: object, event: str, arg: object) -> None:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()  # replaces this hook for the calling thread

    threading.setprofile(start)  # type: ignore[arg-type]
    profiles[0].enable()
    return profiles


class GcClock:
    """Counts the garbage collector's runs and wall time per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.collections[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started

    def snapshot(self) -> dict[str, list[float]]:
        return {"collections": list(self.collections), "seconds": [round(s, 4) for s in self.seconds]}


def serve(port_file: str, model_name: str, max_batch: int, torch_threads: int, profile_out: str | None,
          cpus: set[int] | None) -> int:
    """Run the app on an ephemeral port; write the port to `port_file`; stop on SIGINT.

    SIGUSR1 writes the garbage collector's counts so far to `port_file`.gc (the parent reads it
    before and after the measured run).
    """
    import gc
    import logging

    if cpus:  # before torch starts its threads: they inherit it
        os.sched_setaffinity(0, cpus)
    import torch
    import uvicorn

    import server
    from pipelines.tiny import tiny_sd2
    from server.app import create_app
    from server.commands.serve import serve_announcing
    from server.engine import Engine
    from server.settings import Settings

    print(f"serving the server package of {Path(server.__file__).parent.parent}", flush=True)

    torch.set_num_threads(torch_threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(max_batch=max_batch, max_queue=4 * max_batch, request_timeout_s=120.0,
                        drain_timeout_s=10.0, shutdown_delay_s=0.0)
    if model_name == "known":
        from tests.server.known_model import known_model

        model = known_model()
    else:
        model = tiny_sd2()
    engine = Engine([model], settings)
    app = create_app(settings, engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", access_log=False,
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    profiles = _profile_every_thread() if profile_out else []
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    signal.signal(signal.SIGUSR1, lambda *_: Path(port_file + ".gc").write_text(json.dumps(gc_clock.snapshot())))

    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        asyncio.run(serve_announcing(server, lambda port: Path(port_file).write_text(str(port)), poll_s=0.02))
    if profile_out:
        threading.setprofile(None)  # type: ignore[arg-type]
        for profile in profiles:
            profile.disable()
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(profile_out)
    return 0


# ---------------------------------------------------------------------------------------------
# The client side


def _cpus(text: str | None) -> set[int] | None:
    return {int(c) for c in text.split(",")} if text else None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(root: Path, model_name: str, max_batch: int, torch_threads: int, profile_out: str | None,
                   log_path: str, server_cpus: str) -> Iterator[tuple[int, int, str]]:
    """A server subprocess running `root`'s server and pipelines (this file's serving code);
    yields (pid, port, port file); SIGINT and wait at the end (profiles dump then)."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", port_file, "--model", model_name, "--max-batch", str(max_batch),
               "--torch-threads", str(torch_threads)]
        if profile_out:
            cmd += ["--profile-out", profile_out]
        if server_cpus:
            cmd += ["--server-cpus", server_cpus]
        # root first on the path: its packages win over the editable install's finder
        env = {**os.environ, "PYTHONPATH": str(root)}
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=root, env=env)
        try:
            end = time.monotonic() + 120
            while not os.path.exists(port_file) or not Path(port_file).read_text():
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"the server did not start; see {log_path}")
                time.sleep(0.05)
            yield proc.pid, int(Path(port_file).read_text()), port_file
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def gc_snapshot(pid: int, port_file: str) -> dict[str, list[float]]:
    """The server's garbage-collector counts and seconds so far (see `serve`)."""
    path = Path(port_file + ".gc")
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(path.read_text()))
        time.sleep(0.01)
    raise RuntimeError("the server did not report its garbage-collector counts")


def load_args(port: int, mode: str, requests: int, concurrency: int) -> argparse.Namespace:
    """bench/load.py's arguments for one closed-loop run of SD-Turbo-shaped requests."""
    return load.parse_args([
        "--url", f"http://127.0.0.1:{port}", "--mode", "closed", "--concurrency", str(concurrency),
        "--requests", str(requests), "--warmup", "0", "--sampler", "onestep", "--steps", "1",
        "--guidance", "1.0", "--width", str(SIDE), "--height", str(SIDE), *MODES[mode],
    ])


def _short(path: str, root: Path) -> str:
    """A profiled file's path relative to the served tree (or this one) where it lies inside."""
    for base in (str(root), str(Path.cwd())):
        path = path.replace(base + "/", "")
    return path


def top_functions(profile_path: str, sort: str, root: Path, n: int = TOP_N) -> list[dict[str, Any]]:
    """The n functions first by `sort` ("cumulative" or "tottime"): where, calls, self and cumulative s."""
    stats = pstats.Stats(profile_path)
    rows = []
    for func, (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(func[0], root)}:{func[1]}({func[2]})", "calls": calls,
                     "self_s": round(tottime, 4), "cumulative_s": round(cumtime, 4)})
    key = "cumulative_s" if sort == "cumulative" else "self_s"
    return sorted(rows, key=lambda r: -r[key])[:n]


def profile_text(profile_path: str, root: Path) -> str:
    """pstats' own listing, by cumulative then self time (paths shortened to the repo)."""
    out = io.StringIO()
    stats = pstats.Stats(profile_path, stream=out)
    stats.sort_stats("cumulative").print_stats(TOP_N)
    stats.sort_stats("tottime").print_stats(TOP_N)
    return _short(out.getvalue(), root)


def measure(variant: str, root: Path, mode: str, args: argparse.Namespace, profile_dir: Path | None) -> dict[str, Any]:
    """One server of `root`, warm-up, then the measured closed loop; the record of this mode."""
    # the raw pstats file stays in the temp dir (pstats.Stats(path) to dig further); its listing
    # goes next to the results
    profile_out = os.path.join(tempfile.gettempdir(), f"darkroom_{variant}_{mode}.prof") if profile_dir else None
    log_path = os.path.join(tempfile.gettempdir(), "darkroom_http_overhead_server.log")
    with server_process(root, args.model, args.max_batch, args.torch_threads, profile_out, log_path,
                        args.server_cpus) as (pid, port, port_file):
        asyncio.run(load.run(load_args(port, mode, args.warmup, args.concurrency)))
        gc_before = gc_snapshot(pid, port_file)
        cpu_before = process_cpu_s(pid)
        report = asyncio.run(load.run(load_args(port, mode, args.requests, args.concurrency)))
        cpu_s = process_cpu_s(pid) - cpu_before
        gc_after = gc_snapshot(pid, port_file)
    record: dict[str, Any] = {
        "variant": variant,
        "mode": mode,
        "profiled": profile_out is not None,
        "requests": report.requests,
        "ok": report.ok,
        "failures": report.failures,
        "wall_s": round(report.wall_s, 3),
        "requests_per_s": round(report.requests_per_s, 2),
        "latency_p50_ms": None if report.latency_p50_s is None else round(report.latency_p50_s * 1e3, 2),
        "latency_p99_ms": None if report.latency_p99_s is None else round(report.latency_p99_s * 1e3, 2),
        "server_cpu_s": round(cpu_s, 3),
        # the /v1/models call of load.run is one more request in the same CPU window
        "server_cpu_ms_per_request": round(cpu_s / max(1, report.requests) * 1e3, 3),
        "body_bytes_mean": report.body_bytes_mean,
        # the garbage collector during the measured run, per generation (0, 1, 2)
        "gc_collections": [int(a - b) for a, b in zip(gc_after["collections"], gc_before["collections"])],
        "gc_s": [round(a - b, 4) for a, b in zip(gc_after["seconds"], gc_before["seconds"])],
        "model": args.model,
        "concurrency": args.concurrency,
        "max_batch": args.max_batch,
        "torch_threads": args.torch_threads,
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "width": SIDE,
        "height": SIDE,
    }
    if profile_out is not None:
        record["profile_top_cumulative"] = top_functions(profile_out, "cumulative", root, 15)
        record["profile_top_self"] = top_functions(profile_out, "tottime", root, 15)
        assert profile_dir is not None
        text_path = profile_dir / f"{variant}_{mode}.txt"
        text_path.write_text(profile_text(profile_out, root))
        record["profile_text"] = str(text_path)
    return record


def environment() -> dict[str, Any]:
    """What the numbers depend on: CPU, core count, Python and library versions."""
    import fastapi
    import pydantic
    import torch
    import uvicorn

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fastapi": fastapi.__version__,
        "pydantic": pydantic.__version__,
        "uvicorn": uvicorn.__version__,
    }


@contextlib.contextmanager
def variant_roots(specs: list[str]) -> Iterator[dict[str, tuple[Path, str]]]:
    """NAME -> (the tree it serves, where from): NAME (this tree), NAME@REV (git archive of REV), NAME=DIR."""
    roots: dict[str, tuple[Path, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            if "@" in spec:
                name, rev = spec.split("@", 1)
                source = "commit " + subprocess.run(["git", "rev-parse", "--short", rev], check=True,
                                                    capture_output=True, text=True).stdout.strip()
                root = Path(tmp) / name
                root.mkdir()
                archive = subprocess.run(["git", "archive", rev, "server", "pipelines", "bench", "tests/__init__.py",
                                          "tests/server/__init__.py", "tests/server/known_model.py"], check=True,
                                         capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
            elif "=" in spec:
                name, directory = spec.split("=", 1)
                root = Path(directory).resolve()
                source = str(root)
            else:
                name, root, source = spec, Path.cwd(), "working tree"
            roots[name] = (root, source)
        yield roots


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every mode asked for, each variant in turn; records appended to args.output (created if missing)."""
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    profile_dir = output.parent / "cpu_http_overhead_profiles" if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    affinity = os.sched_getaffinity(0)
    client_cpus = _cpus(args.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    records = []
    try:
        with variant_roots(args.variant or ["current"]) as roots:
            for mode in args.modes.split(","):
                for variant, (root, source) in roots.items():
                    records.append(measure(variant, root, mode, args, profile_dir) | {"server_source": source} | env
                                   | {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                    print_record(records[-1])
    finally:
        os.sched_setaffinity(0, affinity)
    existing = json.loads(output.read_text()) if output.exists() else {"records": []}
    existing["records"].extend(records)
    output.write_text(json.dumps(existing, indent=1) + "\n")
    return records


def print_record(record: dict[str, Any]) -> None:
    print(f"{record['variant']:>24} {record['mode']:>9}{' (profiled)' if record['profiled'] else ''}: "
          f"{record['requests_per_s']:7.1f} req/s  p50 {record['latency_p50_ms']} ms  p99 {record['latency_p99_ms']} ms  "
          f"server CPU {record['server_cpu_ms_per_request']:.3f} ms/request  gc {record['gc_collections']} "
          f"{record['gc_s']} s  failures {record['failures'] or 'none'}",
          flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--variant", action="append",
                   help="NAME (this tree), NAME@REV (a commit) or NAME=DIR; repeat for an A/B in one run")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--requests", type=int, default=1500, help="measured requests per mode")
    p.add_argument("--warmup", type=int, default=100, help="requests per mode before measuring")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--model", choices=("known", "tiny-sd2"), default="known")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--torch-threads", type=int, default=1)
    two = (os.cpu_count() or 1) >= 2
    p.add_argument("--server-cpus", default="0" if two else "",
                   help="CPUs the server is pinned to (comma-separated; empty: not pinned); a GIL-bound server "
                        "uses about one, and pinning keeps the clients from taking its time slices")
    p.add_argument("--client-cpus", default="1" if two else "", help="CPUs the clients are pinned to")
    p.add_argument("--profile", action="store_true", help="run the server under cProfile")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT))
    p.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    p.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}; known: {', '.join(MODES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve, args.model, args.max_batch, args.torch_threads, args.profile_out,
                     _cpus(args.server_cpus))
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
