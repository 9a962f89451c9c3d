"""Paired ratios and their intervals (the one owner of how SimQ compares latencies)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from simq.targets import PairedRatio, median_interval, round_ratios, timed_ratio, timed_ratios


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


def test_timed_ratio_spreads_its_rounds_over_every_session_pair():
    calls = {name: 0 for name in ("r0", "r1", "r2", "c0", "c1", "c2")}

    def counted(name: str, seconds: float):
        sleep = _sleeper(seconds)

        def call():
            calls[name] += 1
            sleep()

        return call

    references = [counted(f"r{k}", 0.0004) for k in range(3)]
    candidates = [counted(f"c{k}", 0.0002) for k in range(3)]
    paired = timed_ratio(references, candidates, tolerance=0.5, min_rounds=10, max_rounds=40)
    assert paired.rounds == 15  # one block of 5 rounds per pair, though 10 rounds met the tolerance
    assert all(n > 0 for n in calls.values())
    assert calls["r0"] == calls["r1"] == calls["r2"] == calls["c0"]
    assert 0.3 < paired.ratio < 0.8
    with pytest.raises(ValueError, match="pair them one to one"):
        timed_ratio(references, candidates[:2])


def test_timed_ratios_keep_every_candidate_in_rotation_until_the_last_is_done():
    rng = np.random.default_rng(0)
    steady, noisy = _sleeper(0.0002), lambda: _sleeper(rng.uniform(0.0001, 0.0009))()
    told = []
    ratios = timed_ratios(
        _sleeper(0.0004), {"steady": steady, "noisy": noisy}, tolerance=0.05, min_rounds=10, max_rounds=15, progress=lambda *a: told.append(a)
    )
    assert [total for _, total in told] == [2, 2, 2]  # after each of 3 turns of 5 rounds
    assert [done for done, _ in told] == sorted(done for done, _ in told) and told[-1] == (2, 2)
    assert list(ratios) == ["steady", "noisy"]
    assert ratios["noisy"].rounds == 15  # never within ±5 %: the round limit
    assert ratios["steady"].rounds == 15  # within ±5 % after 10 rounds, but timed over the same stretch
    assert 0.3 < ratios["steady"].ratio < 0.8
    assert ratios["steady"].low <= ratios["steady"].ratio <= ratios["steady"].high


def test_timed_ratios_stop_once_every_interval_is_narrow():
    ratios = timed_ratios(_sleeper(0.0004), {1: _sleeper(0.0002), 2: _sleeper(0.0001)}, tolerance=0.5, min_rounds=10, max_rounds=40)
    assert [r.rounds for r in ratios.values()] == [10, 10]
    assert ratios[2].ratio < ratios[1].ratio
    assert timed_ratios(_sleeper(0.0004), {}) == {}


def test_a_time_limit_ends_the_timing_once_every_candidate_has_its_minimum_rounds():
    rng = np.random.default_rng(0)

    def noisy():
        _sleeper(rng.uniform(0.0001, 0.0009))()

    # Never within ±0.1 %: without a limit the round limit (40) ends it; a spent limit ends it
    # at the minimum, for the single ratio and for the rotation alike.
    assert timed_ratio(_sleeper(0.0003), noisy, tolerance=0.001, min_rounds=10, max_rounds=40, time_limit=1e-6).rounds == 10
    ratios = timed_ratios(_sleeper(0.0003), {"a": noisy, "b": noisy}, tolerance=0.001, min_rounds=10, max_rounds=40, time_limit=1e-6)
    assert [r.rounds for r in ratios.values()] == [10, 10]
    unlimited = timed_ratios(_sleeper(0.0003), {"a": noisy}, tolerance=0.001, min_rounds=10, max_rounds=20, time_limit=None)
    assert unlimited["a"].rounds == 20
