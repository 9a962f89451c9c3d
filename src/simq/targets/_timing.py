"""Same-run comparisons: models timed in interleaved blocks, and ratios paired by round.

This module owns the paired ratio: every latency SimQ reports (search labels, cost-model
labels, the final pass, benchmarks) is a median of per-round ratios to a reference timed in the
same rounds, with the distribution-free interval of that median beside it.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from scipy import stats

__all__ = [
    "MAX_ROUNDS", "MIN_ROUNDS", "PER_ROUND", "ROUNDS", "TOLERANCE", "PairedRatio", "compare", "interleave",
    "median_interval", "paired_ratio", "round_ratios", "timed_ratio", "timed_ratios",
]  # fmt: skip

#: Default protocol: rounds, and timed calls per model per round.
ROUNDS, PER_ROUND = 5, 4
#: Adaptive protocol (`timed_ratio`): stop once the 95 % interval of the ratio is within
#: ±TOLERANCE of it, after at least MIN_ROUNDS and at most MAX_ROUNDS paired rounds. At ±3 % and
#: 40 rounds two fresh processes re-timing one README run's front read its speed-ups over the
#: recipe up to 5.1 % apart (docs/RETIME.md at commit 6cf979d); at ±1.5 % and 120 rounds within
#: 2.8 % and 0.9 % on two runs (docs/RETIME.md, docs/RETIME_run1.md), for 1.4 more minutes of
#: that job's final pass (2.2 instead of 0.8). Slower models pay more: bert-base's final pass took
#: 12 of its run's 21 minutes on openvino-cpu, hence the final pass's time limit
#: (`simq.search.CompileOptions.final_time_limit`).
TOLERANCE, MIN_ROUNDS, MAX_ROUNDS = 0.015, 10, 120
_BLOCK = 5  # rounds per interleaved block of the adaptive protocol

Call = Callable[[], Any]  # one timed call of a model: a session's run on fixed inputs
K = TypeVar("K")


@dataclass(frozen=True)
class PairedRatio:
    """A candidate's latency as a ratio to a reference timed in the same rounds.

    Attributes:
        ratio: Median over rounds of (candidate's round median / reference's round median).
        low, high: The 95 % distribution-free interval of that median (order statistics).
        reference_ms: The reference's median per-call latency over the same rounds.
        rounds: Paired rounds behind the ratio.
    """

    ratio: float
    low: float
    high: float
    reference_ms: float
    rounds: int

    @property
    def half_width(self) -> float:
        """The interval's larger side, relative to the ratio (0.03 is ±3 %)."""
        return max(self.high / self.ratio - 1, 1 - self.low / self.ratio)

    def metrics(self) -> dict[str, float]:
        """As stored with a record: ``latency_ratio`` and its interval."""
        return {"latency_ratio": self.ratio, "latency_ratio_low": self.low, "latency_ratio_high": self.high}


def interleave(
    calls: Mapping[str, Callable[[], Any]], rounds: int = ROUNDS, per_round: int = PER_ROUND, rewarm: int = 2
) -> dict[str, list[float]]:
    """Per-call latencies (ms) of every call, measured in interleaved blocks.

    Each round visits every call in turn; after each switch a few untimed calls re-warm the
    caches (the first calls after a model switch run slow), then `per_round` calls are timed.
    The order rotates between rounds so that no model always follows the same one. Round r of
    a call is ``times[r * per_round : (r + 1) * per_round]``.
    """
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for call in calls.values():
        for _ in range(rewarm * 2):
            call()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = calls[name]
            for _ in range(rewarm):
                call()
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def round_ratios(candidate: Sequence[float], reference: Sequence[float], per_round: int = PER_ROUND) -> list[float]:
    """Per round: the candidate's median call over the reference's median call.

    Pairing each round with its neighbouring block cancels disturbances longer than a round,
    which a ratio of overall medians does not.
    """
    if len(candidate) != len(reference) or not candidate:
        raise ValueError("a paired ratio needs the same number of timed calls for both, at least one round")
    return [
        statistics.median(candidate[i : i + per_round]) / statistics.median(reference[i : i + per_round])
        for i in range(0, len(candidate), per_round)
    ]


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free interval of the median of `values` (order statistics): no normality
    assumed, which round ratios disturbed by a noisy neighbour do not have."""
    ordered = sorted(values)
    n = len(ordered)
    if n < 6:  # too few for any order-statistic interval at 95 %: the range is all there is
        return ordered[0], ordered[-1]
    k = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))  # the k-th smallest and largest bound it
    k = max(k - 1, 0)
    return ordered[k], ordered[n - 1 - k]


def paired_ratio(candidate: Sequence[float], reference: Sequence[float], per_round: int = PER_ROUND) -> float:
    """Median over rounds of (candidate's round median / reference's round median)."""
    return statistics.median(round_ratios(candidate, reference, per_round))


def _summary(ratios: Sequence[float], reference_ms: Sequence[float]) -> PairedRatio:
    low, high = median_interval(ratios)
    return PairedRatio(statistics.median(ratios), low, high, statistics.median(reference_ms), len(ratios))


def compare(reference: Callable[[], Any], candidate: Callable[[], Any], rounds: int = ROUNDS) -> PairedRatio:
    """Time `candidate` interleaved with `reference` for a fixed number of rounds."""
    times = interleave({"reference": reference, "candidate": candidate}, rounds=rounds)
    return _summary(round_ratios(times["candidate"], times["reference"]), times["reference"])


def timed_ratio(
    reference: Call | Sequence[Call],
    candidate: Call | Sequence[Call],
    tolerance: float = TOLERANCE,
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = MAX_ROUNDS,
    time_limit: float | None = None,
) -> PairedRatio:
    """Blocks of paired rounds until the 95 % interval of the median ratio lies within
    ±`tolerance` of it (between `min_rounds` and `max_rounds` rounds, or once `time_limit`
    seconds are spent after `min_rounds`).

    `reference` and `candidate` may each be several instances of one model (fresh sessions, as
    many of one as of the other): block b pairs instance b mod n of both, every pair is timed for
    at least one block, and the ratio and its interval are taken over all their rounds, so that
    they cover where each session's buffers landed (docs/INSTANCES.md measures whether that makes
    fresh processes agree).
    """
    references, candidates = _instances(reference), _instances(candidate)
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} reference sessions for {len(candidates)} candidate sessions: pair them one to one")
    min_rounds = min(max(min_rounds, _BLOCK * len(references)), max_rounds)
    ratios: list[float] = []
    reference_ms: list[float] = []
    blocks = itertools.cycle(zip(references, candidates))
    spent = _clock(time_limit)
    while True:
        _block(*next(blocks), ratios, reference_ms)
        result = _summary(ratios, reference_ms)
        if len(ratios) >= max_rounds or len(ratios) >= min_rounds and (result.half_width <= tolerance or spent()):
            return result


def timed_ratios(
    reference: Call,
    candidates: Mapping[K, Call],
    tolerance: float = TOLERANCE,
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = MAX_ROUNDS,
    progress: Callable[[int, int], None] | None = None,
    time_limit: float | None = None,
) -> dict[K, PairedRatio]:
    """Several candidates against one reference, timed in rotation: each rotation gives every
    candidate a block of paired rounds, until each one's 95 % interval lies within ±`tolerance`
    of its ratio (at least `min_rounds`, at most `max_rounds` rounds each). `progress` is told
    ``(done, total)`` after every rotation: how many candidates need no more rounds.

    A candidate whose interval is narrow early keeps its turns (up to `max_rounds`) until the
    last one is done, so that every ratio is taken over the same stretch of time: a ratio to
    FP32 moves with the host's load (docs/DRIFT.md), and candidates timed one after the other
    would each be read under a different load.

    `time_limit` (seconds) ends the rotation once it is spent and every candidate has
    `min_rounds`: slow models (a BERT-base's dozens of milliseconds a call) would otherwise take
    every one of their `max_rounds` whenever one interval stays wide. Each ratio's interval and
    rounds say how far it got.
    """
    min_rounds = min(min_rounds, max_rounds)
    ratios: dict[K, list[float]] = {k: [] for k in candidates}
    reference_ms: dict[K, list[float]] = {k: [] for k in candidates}

    def done(k: K) -> bool:
        n = len(ratios[k])
        return n >= max_rounds or (n >= min_rounds and _summary(ratios[k], reference_ms[k]).half_width <= tolerance)

    spent = _clock(time_limit)

    def out_of_time() -> bool:
        return spent() and all(len(r) >= min_rounds for r in ratios.values())

    while not all(done(k) for k in candidates) and not out_of_time():
        for k, candidate in candidates.items():
            if len(ratios[k]) < max_rounds:
                _block(reference, candidate, ratios[k], reference_ms[k])
        if progress is not None:
            progress(sum(done(k) for k in candidates), len(candidates))
    return {k: _summary(ratios[k], reference_ms[k]) for k in candidates}


def _clock(time_limit: float | None) -> Callable[[], bool]:
    """Whether `time_limit` seconds from now are spent (never, without a limit)."""
    if time_limit is None:
        return lambda: False
    deadline = time.monotonic() + time_limit
    return lambda: time.monotonic() >= deadline


def _block(reference: Call, candidate: Call, ratios: list[float], reference_ms: list[float]) -> None:
    """One block of paired rounds: its per-round ratios and the reference's calls, appended."""
    times = interleave({"reference": reference, "candidate": candidate}, rounds=_BLOCK, per_round=PER_ROUND)
    ratios += round_ratios(times["candidate"], times["reference"])
    reference_ms += times["reference"]


def _instances(calls: Call | Sequence[Call]) -> list[Call]:
    return [calls] if callable(calls) else list(calls)
