"""Hardware targets: lowering, fingerprints, honest latency measurement, found by name."""

from simq.targets._api import Artifact, Fingerprint, LatencyStats, Target, time_calls
from simq.targets._registry import ENTRY_POINT_GROUP, TargetInfo, TargetRegistry

__all__ = [
    "ENTRY_POINT_GROUP",
    "Artifact",
    "Fingerprint",
    "LatencyStats",
    "Target",
    "TargetInfo",
    "TargetRegistry",
    "time_calls",
]
