"""bench.latency_floor: the two-point step model, its steady state (Little's law) and the ideal-engine simulation."""

from __future__ import annotations

import statistics

import pytest

from bench.latency_floor import latency_floor, percentile, simulate

A, C, STEPS, BATCH = 0.010, 0.005, 10, 8  # a step: 10 ms + 5 ms per image in flight
BATCH1 = STEPS * (A + C)
SATURATED = BATCH / (STEPS * (A + C * BATCH))


def test_model_recovers_the_step_costs_and_obeys_littles_law() -> None:
    floor = latency_floor(BATCH1, SATURATED, BATCH, STEPS, load=0.8)
    assert floor.fixed_s == pytest.approx(A) and floor.per_image_s == pytest.approx(C)
    rate = 0.8 * SATURATED
    assert floor.in_flight == pytest.approx(rate * STEPS * A / (1 - rate * STEPS * C))
    assert floor.in_flight == pytest.approx(rate * floor.latency_s)  # L = lambda W
    assert floor.in_flight / (STEPS * (A + C * floor.in_flight)) == pytest.approx(rate)  # keeps up exactly
    assert floor.ratio == pytest.approx(floor.latency_s / BATCH1) and floor.ratio > 1


def test_floor_rises_with_load_and_rejects_bad_arguments() -> None:
    ratios = [latency_floor(BATCH1, SATURATED, BATCH, STEPS, load).ratio for load in (0.2, 0.5, 0.8, 0.95)]
    assert ratios == sorted(ratios)
    for bad in ({"max_batch": 1, "load": 0.8}, {"max_batch": BATCH, "load": 1.0}):
        with pytest.raises(ValueError):
            latency_floor(BATCH1, SATURATED, bad["max_batch"], STEPS, bad["load"])


def test_simulation_alone_and_under_load() -> None:
    floor = latency_floor(BATCH1, SATURATED, BATCH, STEPS, load=0.8)
    quiet = simulate(floor, STEPS, BATCH, rate=0.01 / BATCH1, requests=500)
    assert percentile(quiet, 0.9) == pytest.approx(BATCH1, rel=1e-6)  # alone (an idle engine starts it at once): batch-1 latency
    assert max(quiet) <= (STEPS + 1) * (A + 2 * C) + 1e-9  # a rare overlap: one step's wait, then steps shared by two
    loaded = simulate(floor, STEPS, BATCH, rate=0.8 * SATURATED, requests=5000)
    assert len(loaded) == 5000
    assert statistics.fmean(loaded) >= floor.latency_s  # Poisson arrivals only add queueing to the even-arrival floor
    assert percentile(loaded, 0.99) > percentile(loaded, 0.5)
    assert simulate(floor, STEPS, BATCH, 0.8 * SATURATED, 300, seed=1) == simulate(floor, STEPS, BATCH, 0.8 * SATURATED, 300, seed=1)
