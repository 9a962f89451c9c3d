"""Same-run comparisons: models timed in interleaved blocks, and ratios paired by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["PER_ROUND", "ROUNDS", "compare", "interleave", "paired_ratio"]

#: Default protocol: rounds, and timed calls per model per round.
ROUNDS, PER_ROUND = 5, 4


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


def paired_ratio(candidate: Sequence[float], reference: Sequence[float], per_round: int = PER_ROUND) -> float:
    """Median over rounds of (candidate's round median / reference's round median).

    Pairing each round with its neighbouring block cancels disturbances shorter than a round,
    which a ratio of overall medians does not.
    """
    if len(candidate) != len(reference) or not candidate:
        raise ValueError("paired_ratio needs the same number of timed calls for both, at least one round")
    return statistics.median(
        statistics.median(candidate[i : i + per_round]) / statistics.median(reference[i : i + per_round])
        for i in range(0, len(candidate), per_round)
    )


def compare(reference: Callable[[], Any], candidate: Callable[[], Any]) -> tuple[float, float]:
    """Time `candidate` interleaved with `reference`: (paired ratio, reference's median ms)."""
    times = interleave({"reference": reference, "candidate": candidate})
    return paired_ratio(times["candidate"], times["reference"]), statistics.median(times["reference"])
