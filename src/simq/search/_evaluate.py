"""Evaluating one model: build its artifact, score it in its runtime, time it against FP32 in the
same run; and the executors that run evaluations (in this process by default).

An evaluation returns what it measured and commits nothing: the search loop commits each one to
the store as it arrives, so an executor may run them anywhere and in any order.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import onnx_ir as ir

from simq.errors import SimqError
from simq.ir import analyze
from simq.search._store import Store
from simq.targets import Artifact, compare, features

__all__ = ["Evaluation", "Executor", "InProcessExecutor", "ModelEvaluator", "first_line"]

T = TypeVar("T")
R = TypeVar("R")


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one model measured (``error`` says why it failed, if it did)."""

    metrics: dict[str, float] = field(default_factory=dict)
    digest: str | None = None
    error: str | None = None
    seconds: float = 0.0


@runtime_checkable
class Executor(Protocol):
    """Runs evaluations: `map` yields ``(item, result)`` pairs as they finish (any order)."""

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]: ...


class InProcessExecutor:
    """One evaluation after the other, in this process."""

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        for item in items:
            yield item, function(item)


class ModelEvaluator:
    """Builds, scores and times models of one job, each latency a ratio to FP32 in the same run.

    Args:
        job: The compile job.
        options: Its `CompileOptions`.
        work: A scratch folder.
        store: Where measurements already made (by artifact digest) are found.
        fingerprint: The target's fingerprint key.
    """

    def __init__(self, job: Any, options: Any, work: Path, store: Store, fingerprint: str) -> None:
        self.job, self.options, self.work, self.store, self.fingerprint = job, options, work, store, fingerprint
        self._reference_runner = None
        self._reference_ms: list[float] = []

    def reference_artifact(self, workdir: Path) -> Artifact:
        return self.job.target.lower(self.job.model, workdir)

    def candidate_artifact(self, config: Mapping[str, Hashable]) -> Callable[[Path], Artifact]:
        return lambda workdir: self.job.target.lower(self.job.pipeline.build(config), workdir)

    def evaluate(self, build: Callable[[Path], Artifact], config: Mapping[str, Hashable], kind: str) -> Evaluation:
        """Build the artifact, measure every metric; a failure is recorded (the reference's raises)."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        digest = None
        try:
            with tempfile.TemporaryDirectory(dir=self.work) as tmp:
                artifact = build(Path(tmp))
                digest = artifact.digest()
                metrics["size_bytes"] = float(artifact.size_bytes)
                if self.options.needs_accuracy:
                    metrics["accuracy"] = self.job.evaluator.evaluate(self.job.target.load(artifact), artifact)
                for objective in self.options.chosen_objectives():
                    if objective.measure is not None:
                        metrics[objective.name] = float(objective.measure(artifact))
                metrics.update(self._latency(config, kind, artifact, digest))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one candidate's failure (e.g. in a user evaluator) is recorded, not fatal
            if kind == "reference":
                raise (e if isinstance(e, SimqError) else SimqError(f"the FP32 model cannot be evaluated: {first_line(e)}")) from e
            return Evaluation({}, digest, first_line(e), time.perf_counter() - start)
        return Evaluation(metrics, digest, None, time.perf_counter() - start)

    def _features_model(self, config: Mapping[str, Hashable], kind: str, artifact: Artifact) -> ir.Model:
        """The model the cost model reads: the candidate before the target's fusions (their
        contrib ops hide shapes from ONNX inference), the reference, or a baseline's ONNX."""
        if kind == "candidate":
            return self.job.pipeline.build(config, lower=False)
        if kind == "reference":
            return self.job.model
        if artifact.onnx.suffix != ".onnx":
            raise SimqError(f"{config.get('baseline')} has no ONNX model for the cost model to read.")
        return ir.load(artifact.onnx)

    def _latency(self, config: Mapping[str, Hashable], kind: str, artifact: Artifact, digest: str) -> dict[str, float]:
        if self.options.latency == "predicted":
            model = self._features_model(config, kind, artifact)
            ms = self.job.cost_model.predict(features(model, analyze(model, dict(self.job.structure.signature)))).latency_ms
            return {"latency_ms": ms}
        cached = self.store.measurement(digest, self.fingerprint)
        if cached is None:
            if self._reference_runner is None:
                self._reference_runner = self.job.target.runner(self.reference_artifact(self.work / "reference"), self.job.feed)
            ratio, reference_ms = compare(self._reference_runner, self.job.target.runner(artifact, self.job.feed))
            if kind == "reference":
                # 1 by definition; timed against itself, a 0.05 ms model came out at 1.44 and was
                # then dominated by candidates slower than it.
                ratio = 1.0
            self._reference_ms.append(reference_ms)
            cached = (ratio, ratio * statistics.median(self._reference_ms))
            self.store.add_measurement(digest, self.fingerprint, *cached)
        return {"latency_ratio": cached[0], "latency_ms": cached[1]}

    def close(self) -> None:
        self._reference_runner = None
