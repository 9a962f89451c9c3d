"""Hardware targets: lowering, fingerprints, honest latency measurement, found by name."""

from simq.targets._api import Artifact, Fingerprint, LatencyStats, Target, time_calls
from simq.targets._costmodel import CostModel, Prediction
from simq.targets._features import features, lowering_summary
from simq.targets._registry import ENTRY_POINT_GROUP, TargetInfo, TargetRegistry
from simq.targets._timing import PER_ROUND, ROUNDS, compare, interleave, paired_ratio

__all__ = [
    "ENTRY_POINT_GROUP",
    "PER_ROUND",
    "ROUNDS",
    "Artifact",
    "CostModel",
    "Fingerprint",
    "LatencyStats",
    "Prediction",
    "Target",
    "TargetInfo",
    "TargetRegistry",
    "compare",
    "features",
    "interleave",
    "lowering_summary",
    "paired_ratio",
    "time_calls",
]
