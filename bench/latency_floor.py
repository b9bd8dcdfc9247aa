"""The latency a step-batching server cannot beat at a given load, from a call's own figures.

The engine runs every active request's next step in one UNet pass, so at an arrival rate of
`lam` images/s it settles where the pass over the requests in flight completes them as fast as
they arrive. Model one step over b in-flight images as t(b) = a + c * b seconds (a fixed cost, c
per image), fitted to two points the benchmark measures on the same card:

    t(1) = L1 / S                 (batch-1 latency L1 over S steps)
    t(B) = B / (S * X)            (saturated throughput X at the engine's largest batch B)

Throughput at b in flight is b / (S * t(b)); the smallest b that keeps up with `lam` is
b* = lam * S * a / (1 - lam * S * c), and each request then takes W = S * t(b*) (Little's law:
b* = lam * W). W / L1 is the floor of the *mean* loaded-over-unloaded latency with perfectly even
arrivals; Poisson arrivals only add queueing on top, so p99 / L1 sits above it. Text encoding and
decoding are folded into the per-step cost, which is what the two measured points include.

`simulate` runs the same step model under Poisson arrivals (the engine's policy: every waiting
request joins at the next step boundary, up to the largest batch; a request leaves after its S
steps), with no server overhead at all: its p99 / L1 is what an ideal step-batching engine on that
card would show, to set beside the measured one.

    python -m bench.latency_floor [RESULT.json ...] [--load 0.8]   # Markdown table
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from bench.report import RESULTS


@dataclass(frozen=True)
class Floor:
    fixed_s: float  # a: per-step cost whatever the batch
    per_image_s: float  # c: per-step cost of each image in flight
    in_flight: float  # b*: images in flight at the load
    latency_s: float  # W = S * t(b*)
    ratio: float  # W / L1
    rate_per_s: float  # lam = load x the saturated rate
    batch1_s: float  # L1


def latency_floor(batch1_s: float, saturated_ips: float, max_batch: int, steps: int, load: float) -> Floor:
    """The two-point step model's steady state at `load` x the saturated rate (see the module doc)."""
    if max_batch < 2 or not 0 < load < 1:
        raise ValueError("need max_batch >= 2 and 0 < load < 1")
    t1, tb = batch1_s / steps, max_batch / (steps * saturated_ips)
    per_image = (tb - t1) / (max_batch - 1)
    fixed = t1 - per_image
    lam = load * saturated_ips
    in_flight = max(1.0, lam * steps * fixed / (1 - lam * steps * per_image))
    latency = steps * (fixed + per_image * in_flight)
    return Floor(fixed, per_image, in_flight, latency, latency / batch1_s, lam, batch1_s)


def simulate(floor: Floor, steps: int, max_batch: int, rate: float, requests: int = 20000, seed: int = 0) -> list[float]:
    """Latencies (s) of `requests` Poisson arrivals at `rate`/s through the step model, ideal engine."""
    import random

    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(requests):
        t += rng.expovariate(rate)
        arrivals.append(t)
    latencies: list[float] = []
    clock, nxt = 0.0, 0
    waiting: list[float] = []  # arrival times, FIFO
    running: list[list[float]] = []  # [arrival time, steps left]
    while len(latencies) < requests:
        while nxt < requests and arrivals[nxt] <= clock:
            waiting.append(arrivals[nxt])
            nxt += 1
        while waiting and len(running) < max_batch:
            running.append([waiting.pop(0), steps])
        if not running:  # idle until the next arrival
            clock = arrivals[nxt]
            continue
        clock += floor.fixed_s + floor.per_image_s * len(running)
        for job in running:
            job[1] -= 1
        latencies.extend(clock - job[0] for job in running if job[1] == 0)
        running = [job for job in running if job[1] > 0]
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def floors(result: dict, load: float) -> list[tuple[str, str, int, Floor]]:
    """(case, system, steps, floor) for each darkroom system with both a batch-1 and a saturated record."""
    from bench.gpu import CASES

    out = []
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in result["records"]:
        if not str(r.get("system", "")).startswith("darkroom") or r.get("mode") not in ("batch1", "saturated"):
            continue
        system = r["system"]
        if system == "darkroom-http":  # through HTTP (run 15 on): one request at a time and the closed loop, one kind
            if not r.get("engine"):
                continue
            system = f"darkroom-http [{r['engine']}, {r.get('response')}]"
            if r["mode"] in by_key.get((r["case"], system), {}):
                continue  # the first closed loop (the case's own concurrency), not the extra ones
        by_key.setdefault((r["case"], system), {})[r["mode"]] = r
    for (case, system), modes in by_key.items():
        if set(modes) != {"batch1", "saturated"} or case not in CASES:
            continue
        spec = CASES[case]
        floor = latency_floor(modes["batch1"]["latency_s"], modes["saturated"]["images_per_s"], spec.engine_max_batch,
                              spec.steps, load)
        out.append((case, system, spec.steps, floor))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path)
    parser.add_argument("--load", type=float, default=0.8)
    args = parser.parse_args()
    from bench.gpu import CASES

    paths = args.results or sorted(RESULTS.glob("gpu_*.json"))
    print(f"| result | case | system | steps | a (ms) | c (ms/image) | in flight at {args.load:.0%} | mean latency floor | x batch-1 "
          "| ideal engine, Poisson: p50 / p99 x batch-1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        result = json.loads(path.read_text())
        for case, system, steps, f in floors(result, args.load):
            sim = simulate(f, steps, CASES[case].engine_max_batch, f.rate_per_s)
            print(f"| {path.stem} | {case} | {system} | {steps} | {f.fixed_s * 1e3:.2f} | {f.per_image_s * 1e3:.2f} | "
                  f"{f.in_flight:.1f} | {f.latency_s:.3f} s | {f.ratio:.2f}x | "
                  f"{percentile(sim, 0.5) / f.batch1_s:.2f}x / {percentile(sim, 0.99) / f.batch1_s:.2f}x |")


if __name__ == "__main__":
    main()
