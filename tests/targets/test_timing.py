"""Paired ratios and their intervals (the one owner of how SimQ compares latencies)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from simq.targets import PairedRatio, median_interval, round_ratios, timed_ratio


def test_the_median_interval_covers_the_median_at_its_stated_rate():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        values = rng.lognormal(0.0, 0.3, size=15)  # true median 1
        low, high = median_interval(values)
        covered += low <= 1.0 <= high
    assert 0.93 <= covered / 400 <= 1.0
    low, high = median_interval([3.0, 1.0, 2.0])
    assert (low, high) == (1.0, 3.0)  # too few values: the range


def test_round_ratios_pair_each_round_with_its_own_reference():
    candidate = [2.0, 2.0, 4.0, 4.0]
    reference = [1.0, 1.0, 2.0, 2.0]
    assert round_ratios(candidate, reference, per_round=2) == [2.0, 2.0]
    with pytest.raises(ValueError):
        round_ratios([1.0], [1.0, 2.0], per_round=1)


def _sleeper(seconds: float):
    def call():
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return call


def test_timed_ratio_stops_at_its_tolerance_and_reports_an_interval():
    paired = timed_ratio(_sleeper(0.0004), _sleeper(0.0002), tolerance=0.5, min_rounds=10, max_rounds=40)
    assert isinstance(paired, PairedRatio)
    assert paired.rounds == 10  # a loose tolerance is met by the first blocks
    assert paired.low <= paired.ratio <= paired.high
    assert 0.3 < paired.ratio < 0.8
    assert paired.metrics()["latency_ratio_low"] == paired.low


def test_timed_ratio_gives_up_at_its_round_limit():
    # Every call of the candidate draws its own duration, so round medians differ by far more
    # than ±0.1 % (a short repeating cycle would give every round the same median).
    rng = np.random.default_rng(0)
    paired = timed_ratio(
        _sleeper(0.0003), lambda: _sleeper(rng.uniform(0.0001, 0.0009))(), tolerance=0.001, min_rounds=10, max_rounds=15
    )
    assert paired.rounds == 15
