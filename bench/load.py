"""Load generator for a live Darkroom server: open loop (Poisson arrivals) or closed loop (N clients).

    python bench/load.py --mode closed --concurrency 8 --requests 64
    python bench/load.py --mode open --rate 2.0 --duration 30 --json
    python bench/load.py --output-format jpeg --binary     # raw JPEG bodies (Accept: image/jpeg)

Prints p50 / p99 latency, images/s and failures by status. Latency is measured per request
from send to the last byte; images/s counts successful images over the run's wall time.
With --binary the server answers with the image bytes instead of JSON with base64 images.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

PROMPTS = [
    "a small red circle left of a blue square",
    "a large green triangle above a yellow star",
    "two purple hearts on a grey background",
    "an orange square below a small white circle",
]


@dataclass
class Outcome:
    """One request's status, latency and image count."""

    status: str  # HTTP status code, or the exception's name
    latency_s: float
    images: int
    body_bytes: int = 0


@dataclass
class Report:
    """A run's figures: latency percentiles, throughput, failures by status."""

    mode: str
    model: str
    requests: int
    ok: int
    wall_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    latency_mean_s: float | None
    images_per_s: float
    requests_per_s: float
    failures: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    body_bytes_mean: float | None = None  # response body size of successful requests
    client_cpu_s: float | None = None  # this process's CPU over the measured run: near wall_s, the client bounds it


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between order statistics."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def body_for(i: int, args: argparse.Namespace) -> dict[str, Any]:
    """The i-th request body: prompts in rotation, seed i, the run's options."""
    body: dict[str, Any] = {"prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "num_images": args.num_images}
    for key in ("steps", "width", "height", "sampler", "guidance", "model", "output_format", "quality", "decoder"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    return body


def accept_header(args: argparse.Namespace) -> dict[str, str]:
    """Accept: image/<format> with --binary (one raw image per response), else JSON."""
    if not args.binary:
        return {}
    return {"Accept": f"image/{args.output_format or 'png'}"}


async def one(client: httpx.AsyncClient, i: int, args: argparse.Namespace) -> Outcome:
    """Send request i and time it to the last byte."""
    started = time.perf_counter()
    try:
        response = await client.post("/generate", json=body_for(i, args), headers=accept_header(args), timeout=args.timeout_s)
        status = str(response.status_code)
        images = 0
        if response.status_code == 200:
            images = 1 if args.binary else len(response.json().get("images", []))
        size = len(response.content)
    except httpx.HTTPError as e:
        status, images, size = type(e).__name__, 0, 0
    return Outcome(status=status, latency_s=time.perf_counter() - started, images=images, body_bytes=size)


async def closed_loop(client: httpx.AsyncClient, args: argparse.Namespace) -> list[Outcome]:
    """`concurrency` clients, each sending its next request when the last one returns."""
    counter = iter(range(args.requests))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for i in counter:
            outcomes.append(await one(client, i, args))

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return outcomes


async def open_loop(client: httpx.AsyncClient, args: argparse.Namespace) -> list[Outcome]:
    """Poisson arrivals at `rate` per second for `duration` seconds, whatever the server's pace."""
    rng = random.Random(args.seed)
    tasks = []
    end = time.perf_counter() + args.duration
    i = 0
    while time.perf_counter() < end:
        tasks.append(asyncio.create_task(one(client, i, args)))
        i += 1
        await asyncio.sleep(rng.expovariate(args.rate))
    return list(await asyncio.gather(*tasks))


async def until_ready(client: httpx.AsyncClient, timeout_s: float) -> None:
    """Poll /readyz until it answers 200 (a server still loading or warming up answers 503)."""
    end = time.perf_counter() + timeout_s
    while True:
        try:
            if (await client.get("/readyz", timeout=10)).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.perf_counter() > end:
            raise SystemExit(f"the server at {client.base_url} was not ready after {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> Report:
    """Warm up, run the chosen loop, and summarise."""
    limits = httpx.Limits(max_connections=max(args.concurrency, 64), max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=args.url, limits=limits) as client:
        await until_ready(client, args.ready_timeout)
        models = (await client.get("/v1/models", timeout=30)).json()["models"]
        model = args.model or models[0]["id"]
        for i in range(args.warmup):
            await one(client, 10_000 + i, args)
        started, cpu_started = time.perf_counter(), time.process_time()
        outcomes = await (closed_loop(client, args) if args.mode == "closed" else open_loop(client, args))
        wall_s = time.perf_counter() - started
        client_cpu_s = time.process_time() - cpu_started
    ok = [o for o in outcomes if o.status == "200"]
    latencies = [o.latency_s for o in ok]
    return Report(
        mode=args.mode,
        model=model,
        requests=len(outcomes),
        ok=len(ok),
        wall_s=wall_s,
        latency_p50_s=percentile(latencies, 0.5) if latencies else None,
        latency_p99_s=percentile(latencies, 0.99) if latencies else None,
        latency_mean_s=statistics.fmean(latencies) if latencies else None,
        images_per_s=sum(o.images for o in ok) / wall_s,
        requests_per_s=len(ok) / wall_s,
        failures=dict(Counter(o.status for o in outcomes if o.status != "200")),
        settings={k: getattr(args, k) for k in ("concurrency", "requests", "rate", "duration", "steps", "width",
                                                  "height", "num_images", "sampler", "guidance", "output_format",
                                                  "quality", "binary")},
        body_bytes_mean=statistics.fmean(o.body_bytes for o in ok) if ok else None,
        client_cpu_s=client_cpu_s,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--mode", choices=("open", "closed"), default="closed")
    p.add_argument("--concurrency", type=int, default=8, help="closed loop: concurrent clients")
    p.add_argument("--requests", type=int, default=64, help="closed loop: requests in all")
    p.add_argument("--rate", type=float, default=1.0, help="open loop: mean arrivals per second")
    p.add_argument("--duration", type=float, default=30.0, help="open loop: seconds of arrivals")
    p.add_argument("--seed", type=int, default=0, help="open loop: arrival-time seed")
    p.add_argument("--warmup", type=int, default=1, help="requests sent (and not counted) first")
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for /readyz 200 (a compiling warm-up)")
    p.add_argument("--model", default=None)
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--num-images", type=int, default=1)
    p.add_argument("--output-format", choices=("png", "jpeg", "webp"), default=None)
    p.add_argument("--quality", type=int, default=None, help="JPEG / WebP quality")
    p.add_argument("--decoder", choices=("full", "tiny"), default=None, help="the request's decoder (tiny: fast mode)")
    p.add_argument("--binary", action="store_true", help="ask for raw image bytes (Accept: image/<format>)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run and print the report (text or --json)."""
    args = parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report.__dict__, indent=2))
        return 0

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}s"

    load = f"{args.concurrency} clients" if args.mode == "closed" else f"Poisson {args.rate}/s for {args.duration}s"
    print(f"model {report.model}, {args.mode} loop ({load}): {report.ok}/{report.requests} ok in {report.wall_s:.1f}s")
    print(f"  latency p50 {fmt(report.latency_p50_s)}  p99 {fmt(report.latency_p99_s)}  "
          f"mean {fmt(report.latency_mean_s)}")
    print(f"  {report.images_per_s:.2f} images/s, {report.requests_per_s:.2f} requests/s")
    print(f"  failures by status: {report.failures or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
