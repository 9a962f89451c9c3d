"""What a hardware target is: a fingerprint, a lowering, a measurement, and what it supports."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx_ir as ir

__all__ = ["Artifact", "Fingerprint", "LatencyStats", "Target", "time_calls"]


@dataclass(frozen=True)
class Fingerprint:
    """The hardware and runtime a measurement belongs to; measurements never mix across them."""

    target: str
    cpu: str
    isa: tuple[str, ...]
    cores: int
    threads: int
    runtime: str
    runtime_version: str

    def key(self) -> str:
        """A stable string identifying this fingerprint (for stores and caches)."""
        return "|".join([self.target, self.cpu, ",".join(self.isa), str(self.cores), str(self.threads), self.runtime, self.runtime_version])


@dataclass(frozen=True)
class Artifact:
    """A model lowered for one target: the files the runtime loads, and the ONNX it came from."""

    target: str
    path: Path
    onnx: Path
    files: tuple[Path, ...] = field(default=())

    @property
    def size_bytes(self) -> int:
        """Bytes of what the runtime loads: the ONNX it came from counts only if it is loaded itself."""
        return sum(f.stat().st_size for f in self.files if f != self.onnx or f == self.path)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latencies of one measurement, in milliseconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        if len(self.samples) < 4:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median

    @property
    def repeats(self) -> int:
        return len(self.samples)


def time_calls(call: Callable[[], Any], warmup: int, repeats: int) -> LatencyStats:
    """Warm up, then time `repeats` calls one by one."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return LatencyStats(tuple(samples))


@runtime_checkable
class Target(Protocol):
    """A hardware target. Built-ins live in ``simq.targets.<name>``; others plug in through
    the ``simq.targets`` entry-point group (see docs/TARGETS.md)."""

    name: str

    def fingerprint(self) -> Fingerprint: ...

    def supports(self, op_type: str, precision: str) -> bool: ...

    def lower(self, model: ir.Model, workdir: Path) -> Artifact: ...

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A zero-argument callable that runs one inference (so callers can interleave targets)."""
        ...

    def measure(self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50) -> LatencyStats: ...
