"""Evaluating one model: build its artifact, score it in its runtime, time it against FP32 in the
same run; and the executors that run evaluations (in this process by default; on a Ray cluster
with `simq.cluster.RayExecutor`).

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
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx_ir as ir

from simq import errors
from simq.errors import SimqError
from simq.eval import WITHIN, EarlyStopping, Score
from simq.ir import analyze
from simq.search._options import CompileOptions, Job
from simq.search._store import Store
from simq.targets import TOLERANCE, Artifact, PairedRatio, compare, features, timed_in_fresh_process

__all__ = ["Evaluation", "Executor", "InProcessExecutor", "LatencyFunction", "ModelEvaluator", "first_line"]

Config = Mapping[str, Hashable]
#: ``latency(config, kind, artifact, digest)``: the latency metrics of a built artifact.
LatencyFunction = Callable[[Config, str, Artifact, str], dict[str, float]]


def first_line(e: BaseException) -> str:
    """How a candidate's failure is recorded: ``Type: first line of the message``."""
    return errors.first_line(e, 300, typed=True)


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one model measured (``error`` says why it failed, if it did)."""

    metrics: dict[str, float] = field(default_factory=dict)
    digest: str | None = None
    error: str | None = None
    seconds: float = 0.0
    worker: str | None = None  # where it ran (host:pid), when not in this process
    per_example: np.ndarray | None = field(default=None, compare=False, repr=False)  # the evaluator's, where it has them


@runtime_checkable
class Executor(Protocol):
    """Runs the candidates' evaluations of a search."""

    def target_for(self, target: Any) -> Any:
        """The target to prepare the job for: as made on the hardware latencies are measured on
        (its fingerprint and the kernel choices it times there), which may be another machine."""
        ...

    def fingerprint(self, target: Any) -> str:
        """The fingerprint key of the hardware latencies are measured on."""
        ...

    def evaluate(
        self, evaluator: ModelEvaluator, configs: Iterable[Config], in_flight: int | None = None
    ) -> Iterator[tuple[Config, Evaluation]]:
        """Evaluate every config (as `evaluator` would); yield ``(config, evaluation)`` pairs as
        they finish, in any order, each config exactly once. `configs` may be lazy: at most
        `in_flight` are evaluated at once (any number by default), and the next is pulled when
        the consumer asks for the next result, so a steady-state search asks with every result
        before it told."""
        ...

    def time(
        self,
        evaluator: ModelEvaluator,
        reference: Artifact,
        artifacts: Mapping[int, Artifact],
        *,
        final: bool = True,
        progress: Callable[[str], None] | None = None,
        time_limit: float | None = None,
    ) -> Iterator[tuple[int, PairedRatio]]:
        """Time each artifact against `reference` (FP32) on the hardware latencies are measured
        on; yield ``(id, ratio)`` as each is done. `final`: all of them in rotation until every
        ratio's interval is within the final pass's tolerance or `time_limit` is spent
        (`simq.targets.timed_ratios`, in a fresh process: `simq.targets.timed_in_fresh_process`),
        else the search's rounds, one at a time (`simq.targets.compare`: the reference and the
        baselines).
        `progress` is told in a few words how a timing that yields nothing for a while goes
        (the rotation: after each turn). `time_limit`: seconds the final timing may take once
        every model has its minimum rounds (`simq.targets.timed_ratios`)."""
        ...


class InProcessExecutor:
    """One evaluation after the other, in this process; the final pass's timing in a process
    started for it (`simq.targets.timed_in_fresh_process`)."""

    def target_for(self, target: Any) -> Any:
        return target

    def fingerprint(self, target: Any) -> str:
        return target.fingerprint().key()

    def evaluate(
        self, evaluator: ModelEvaluator, configs: Iterable[Config], in_flight: int | None = None
    ) -> Iterator[tuple[Config, Evaluation]]:
        for config in configs:  # one at a time: pulled after the previous result was taken
            yield config, evaluator.evaluate(evaluator.candidate_artifact(config), config, "candidate")

    def time(
        self,
        evaluator: ModelEvaluator,
        reference: Artifact,
        artifacts: Mapping[int, Artifact],
        *,
        final: bool = True,
        progress: Callable[[str], None] | None = None,
        time_limit: float | None = None,
    ) -> Iterator[tuple[int, PairedRatio]]:
        target, feed = evaluator.job.target, evaluator.job.feed
        if final:
            turns = 0

            def turned(done: int, total: int) -> None:
                nonlocal turns
                turns += 1
                if progress is not None:
                    progress(f"timing in rotation: turn {turns}, {done} of {total} models timed to ±{TOLERANCE:.1%}")

            yield from timed_in_fresh_process(target, reference, artifacts, feed, progress=turned, time_limit=time_limit).items()
            return
        runner = target.runner(reference, feed)
        try:
            for i, artifact in artifacts.items():
                yield i, compare(runner, target.runner(artifact, feed))
        finally:
            del runner


class ModelEvaluator:
    """Builds, scores and times models of one job, each latency a ratio to FP32 in the same run.

    Args:
        job: The compile job.
        options: Its `CompileOptions`.
        work: A scratch folder.
        store: Where measurements already made (by artifact digest) are found (None on a
            worker, which measures no latency itself: see `evaluate`'s `latency`).
        fingerprint: The target's fingerprint key.
    """

    def __init__(self, job: Job, options: CompileOptions, work: Path, store: Store | None, fingerprint: str) -> None:
        self.job, self.options, self.work, self.store, self.fingerprint = job, options, work, store, fingerprint
        self._reference_runner = None
        self._reference: Artifact | None = None
        self._reference_ms: list[float] = []
        self.early: EarlyStopping | None = None  # when candidates' scoring stops (set once references are known)

    def reference_artifact(self, workdir: Path) -> Artifact:
        return self.job.target.lower(self.job.model, workdir)

    def candidate_artifact(self, config: Config) -> Callable[[Path], Artifact]:
        return lambda workdir: self.job.target.lower(self.job.pipeline.build(config), workdir)

    def evaluate(
        self, build: Callable[[Path], Artifact], config: Config, kind: str, latency: LatencyFunction | None = None
    ) -> Evaluation:
        """Build the artifact, measure every metric; a failure is recorded (the reference's raises).

        Args:
            latency: Measures the latency metrics instead of this evaluator (e.g. hands the
                artifact to the machine that has the target); `latency_metrics` by default.
        """
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        digest, per_example = None, None
        try:
            with tempfile.TemporaryDirectory(dir=self.work) as tmp:
                artifact = build(Path(tmp))
                digest = artifact.digest()
                metrics["size_bytes"] = float(artifact.size_bytes)
                if self.options.needs_accuracy:
                    score = self._score(artifact, kind)
                    metrics |= {"accuracy": score.value, **score.signals}
                    if score.scored is not None:
                        metrics["scored_examples"] = float(score.scored)
                        metrics["accepted_early"] = float(score.settled == WITHIN)
                    per_example = score.per_example
                for objective in self.options.chosen_objectives():
                    if objective.measure is not None:
                        metrics[objective.name] = float(objective.measure(artifact))
                metrics.update((latency or self.latency_metrics)(config, kind, artifact, digest))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one candidate's failure (e.g. in a user evaluator) is recorded, not fatal
            if kind == "reference":
                raise (e if isinstance(e, SimqError) else SimqError(f"the FP32 model cannot be evaluated: {first_line(e)}")) from e
            return Evaluation({}, digest, first_line(e), time.perf_counter() - start)
        return Evaluation(metrics, digest, None, time.perf_counter() - start, per_example=per_example)

    def _score(self, artifact: Artifact, kind: str) -> Score:
        """The evaluator's score of `artifact`, run with its own settings as a deployment runs it
        (ONNX Runtime's threads spin between calls: minilm-tweets' validation split is scored 5 to
        15 % faster than with SimQ's timing settings, docs/SCORING.md). Its session is closed
        before anything is timed, so that it cannot spin beside a timed one."""
        run = self.job.target.load(artifact, deployment=True)
        if self.early is not None and kind == "candidate":  # evaluators without per-example scores score all
            return self.job.evaluator.score_early(run, artifact, self.early)
        return self.job.evaluator.score(run, artifact)

    def _features_model(self, config: Config, kind: str, artifact: Artifact) -> ir.Model:
        """The model the cost model reads: the candidate before the target's fusions (their
        contrib ops hide shapes from ONNX inference), the reference, or a baseline's ONNX."""
        if kind == "candidate":
            return self.job.pipeline.build(config, lower=False)
        if kind == "reference":
            return self.job.model
        if artifact.onnx.suffix != ".onnx":
            raise SimqError(f"{config.get('baseline')} has no ONNX model for the cost model to read.")
        return ir.load(artifact.onnx)

    def predicted_latency(self, config: Config, kind: str, artifact: Artifact) -> dict[str, float]:
        """The cost model's latency of a built artifact (no timing)."""
        model = self._features_model(config, kind, artifact)
        ms = self.job.cost_model.predict(features(model, analyze(model, dict(self.job.structure.signature)))).latency_ms
        return {"latency_ms": ms}

    def latency_metrics(self, config: Config, kind: str, artifact: Artifact, digest: str) -> dict[str, float]:
        """Predicted, or timed here against FP32 (once per artifact digest and fingerprint)."""
        return self._latency(config, kind, artifact, digest, self._time_here)

    def latency_by(self, executor: Executor) -> LatencyFunction:
        """`latency_metrics`, timed by `executor` (on the measuring node, with Ray): how the
        driver times the reference and the baselines it builds itself."""

        def time_there(artifact: Artifact) -> PairedRatio:
            ((_, paired),) = executor.time(self, self._lowered_reference(), {0: artifact}, final=False)
            return paired

        return lambda config, kind, artifact, digest: self._latency(config, kind, artifact, digest, time_there)

    def _latency(
        self, config: Config, kind: str, artifact: Artifact, digest: str, timer: Callable[[Artifact], PairedRatio]
    ) -> dict[str, float]:
        """Predicted, or the stored timing of this artifact, or timed by `timer` against FP32 and stored."""
        if self.options.latency == "predicted":
            return self.predicted_latency(config, kind, artifact)
        cached = self.measured(digest)
        if cached is None:
            paired = timer(artifact)
            if kind == "reference":
                # 1 by definition; timed against itself, a 0.05 ms model came out at 1.44 and was
                # then dominated by candidates slower than it.
                paired = PairedRatio(1.0, 1.0, 1.0, paired.reference_ms, paired.rounds)
            cached = self.record_timing(digest, paired)
        return cached

    def _time_here(self, artifact: Artifact) -> PairedRatio:
        if self._reference_runner is None:
            self._reference_runner = self.job.target.runner(self._lowered_reference(), self.job.feed)
        return compare(self._reference_runner, self.job.target.runner(artifact, self.job.feed))

    def _lowered_reference(self) -> Artifact:
        """FP32 lowered into the scratch folder, once: what candidates are timed beside."""
        if self._reference is None:
            self._reference = self.reference_artifact(self.work / "reference")
        return self._reference

    def measured(self, digest: str) -> dict[str, float] | None:
        """The latency metrics stored for an artifact on this fingerprint, if it was timed."""
        return self.store.measurement(digest, self.fingerprint)

    def record_timing(self, digest: str, paired: PairedRatio) -> dict[str, float]:
        """Store a timing (a ratio to FP32 timed beside it); its latency metrics, milliseconds
        from the median of FP32's timings in this run."""
        self._reference_ms.append(paired.reference_ms)
        metrics = {**paired.metrics(), "latency_ms": paired.ratio * statistics.median(self._reference_ms)}
        self.store.add_measurement(digest, self.fingerprint, metrics)
        return metrics

    def close(self) -> None:
        self._reference_runner = None
