"""What a hardware target is: a fingerprint, a lowering, a measurement, and what it supports."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx_ir as ir

from simq.ir import Structure, ToolsExport
from simq.passes import Lowering

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
    """A model lowered for one target: the files the runtime loads, the ONNX it came from, and
    the runtime settings it is meant to run (and was measured) under.

    Attributes:
        settings: Session options that change the compiled program or its speed (threads,
            optimisation level, precision hint), as strings; part of `digest`.
    """

    target: str
    path: Path
    onnx: Path
    files: tuple[Path, ...] = field(default=())
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """Bytes of what the runtime loads: the ONNX it came from counts only if it is loaded itself."""
        return sum(f.stat().st_size for f in self.files if f != self.onnx or f == self.path)

    def save_index(self, folder: Path) -> None:
        """Write ``artifact.json`` into `folder`, which holds the artifact's files."""
        folder = Path(folder)
        relative = lambda p: str(Path(p).relative_to(folder))  # noqa: E731
        index = {
            "target": self.target, "path": relative(self.path), "onnx": relative(self.onnx),
            "files": [relative(f) for f in self.files], "settings": dict(self.settings),
        }  # fmt: skip
        (folder / "artifact.json").write_text(json.dumps(index, indent=1))

    @classmethod
    def load_index(cls, folder: Path) -> Artifact:
        """The artifact whose ``artifact.json`` (see `save_index`) is in `folder`."""
        folder = Path(folder)
        index = json.loads((folder / "artifact.json").read_text())
        return cls(
            index["target"], folder / index["path"], folder / index["onnx"],
            tuple(folder / f for f in index["files"]), index["settings"],
        )  # fmt: skip

    def digest(self) -> str:
        """What identifies the compiled program: the files the runtime loads and the settings.

        Measurements are cached under it, so the same ONNX compiled with another precision
        hint is never mistaken for a model already timed.
        """
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda p: p.name):
            if f == self.onnx and f != self.path:
                continue
            with f.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    h.update(block)
        h.update(json.dumps(dict(self.settings), sort_keys=True).encode())
        return h.hexdigest()


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
    the ``simq.targets`` entry-point group (see docs/TARGETS.md).

    A target object keeps what it read and timed of the machine it was made on (its
    `fingerprint`, any microbenchmark its `lowering` runs, once): one made on a Ray measuring node
    and sent to a driver on another CPU plans the job for the measuring node. It must pickle."""

    name: str

    def fingerprint(self) -> Fingerprint: ...

    def supports(self, op_type: str, precision: str) -> bool:
        """Whether the runtime has a kernel for `op_type` at `precision` on this CPU (decided from
        the fingerprint). ``op_type`` ``"*"`` asks about a whole-model precision (``bf16``)."""
        ...

    def lowering(self, signature: Mapping[str, tuple[int, ...]]) -> Lowering:
        """The passes run on every candidate between pruning and quantization (the runtime's
        fused kernels), and how this CPU wants INT8 weights."""
        ...

    def baselines(
        self,
        model: ir.Model,
        structure: Structure,
        batches: Sequence[Mapping[str, np.ndarray]],
        exports: Sequence[ToolsExport] = (),
    ) -> dict[str, Callable[[Path], Artifact]]:
        """The strongest off-the-shelf recipes for this runtime, by name: each builds its artifact
        of `model` into a folder (`batches` are calibration inputs; `exports` the model as the
        user's own tools export it, where it has a PyTorch source, and the model before tuning
        labelled ``original``)."""
        ...

    def lower(self, model: ir.Model, workdir: Path) -> Artifact: ...

    def timing_settings(self) -> dict[str, str]:
        """Runtime settings SimQ's own sessions (`load`, `runner`) use beyond `Artifact.settings`,
        so that several models in one process time without disturbing each other (ONNX Runtime:
        thread spinning stopped when each run returns). Recorded in manifests apart from what a
        deployment runs."""
        ...

    def load(self, artifact: Artifact, *, deployment: bool = False) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        """The artifact loaded in its runtime, as ``run(inputs) -> outputs`` (any batch size the
        model allows): how a shipped model is scored. `deployment`: with the artifact's settings
        alone, as a user's process runs it (not SimQ's `timing_settings`)."""
        ...

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A zero-argument callable that runs one inference (so callers can interleave targets)."""
        ...

    def measure(self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50) -> LatencyStats: ...
