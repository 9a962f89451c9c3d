"""Hardware targets: lowering, fingerprints, honest latency measurement, found by name."""

from simq.targets._api import Artifact, Fingerprint, LatencyStats, Target, time_calls
from simq.targets._costmodel import CostModel, Prediction
from simq.targets._features import features, lowering_summary
from simq.targets._fresh import timed_in_fresh_process
from simq.targets._registry import ENTRY_POINT_GROUP, TargetInfo, TargetRegistry
from simq.targets._timing import (
    MAX_ROUNDS,
    MIN_ROUNDS,
    PER_ROUND,
    ROUNDS,
    TOLERANCE,
    PairedRatio,
    compare,
    interleave,
    median_interval,
    paired_ratio,
    round_ratios,
    timed_ratio,
    timed_ratios,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_ROUNDS",
    "MIN_ROUNDS",
    "PER_ROUND",
    "ROUNDS",
    "TOLERANCE",
    "Artifact",
    "CostModel",
    "Fingerprint",
    "LatencyStats",
    "PairedRatio",
    "Prediction",
    "Target",
    "TargetInfo",
    "TargetRegistry",
    "compare",
    "features",
    "interleave",
    "lowering_summary",
    "median_interval",
    "paired_ratio",
    "round_ratios",
    "time_calls",
    "timed_in_fresh_process",
    "timed_ratio",
    "timed_ratios",
]
