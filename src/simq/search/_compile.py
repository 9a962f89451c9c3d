"""`compile`: search a pipeline's space for one target and emit the Pareto-optimal artifacts.

Order of work: the FP32 reference and the off-the-shelf baselines are evaluated once; the
search algorithm then asks for candidates, each built, lowered, scored, timed (by an
`Executor`, in this process by default) and committed to the store as it finishes; finally the
feasible front is published (`simq.search._final`) and written up (``pareto.csv``,
``report.html``, ``summary.json``).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np

from simq.errors import InvalidArgumentError, SimqError
from simq.ir import model_digest
from simq.passes import defaults
from simq.search._algorithms import FAILED, Goal, make_algorithm
from simq.search._evaluate import Evaluation, Executor, InProcessExecutor, ModelEvaluator
from simq.search._final import publish, select_front
from simq.search._objectives import LIMITED, References, accuracy_drop, tracked_values
from simq.search._options import CompileOptions, CompileResult, Job
from simq.search._out import make_out
from simq.search._report import write_report
from simq.search._space import SearchSpace
from simq.search._store import Record, Store, config_key
from simq.targets import Artifact

__all__ = ["Progress", "compile_model"]

#: ``progress(phase, done, total, detail)``: phases ``"search"``, ``"final"``, ``"cost model"``;
#: `detail` is the record just committed (search) or what was done (final), else None.
Progress = Callable[..., None]


#: A model before tuning within this many points of chance had a head that was never trained.
CHANCE_MARGIN = 5.0
# Options that change how long a run goes on or what it publishes, not the candidates it evaluates:
# a resumed run may change them.
_NOT_SETTINGS = ("budget", "time_limit", "final_models", "keep_slower", "withhold_unconfirmed", "objective_table")


class _Compiler:
    def __init__(self, job: Job, options: CompileOptions, out: Path, resume: bool, progress: Progress | None, executor: Executor | None) -> None:
        self.job, self.options, self.out = job, options, out
        self.progress = progress or (lambda *_: None)
        self.executor = executor or InProcessExecutor()
        self.fingerprint = self.executor.fingerprint(job.target)
        if options.needs_accuracy and job.evaluator is None:
            raise InvalidArgumentError("the accuracy objective or an accuracy limit needs an evaluator.")
        if options.latency == "predicted" and job.cost_model is None:
            raise InvalidArgumentError("predicted latency needs a cost model for the target.")
        self.work = out / "work"
        self.work.mkdir(exist_ok=True)
        self.store = Store(out / Store.FILENAME)
        self.store.bind(self._settings(), resume)
        self.space = SearchSpace(job.pipeline)
        self.evaluator = ModelEvaluator(job, options, self.work, self.store, self.fingerprint)
        #: (calls, seconds) of the driver per step of the search: "ask", "tell", "commit" (the
        #: store), "wait" (for the executor's evaluations).
        self.driver_steps = dict.fromkeys(("ask", "tell", "commit", "wait"), (0, 0.0))
        self.reference_note: str | None = None

    @contextlib.contextmanager
    def _timed(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            calls, seconds = self.driver_steps[step]
            self.driver_steps[step] = (calls + 1, seconds + time.perf_counter() - start)

    def _settings(self) -> dict:
        o = self.options
        return {
            "model": self.job.name,
            "model_hash": model_digest(self.job.model),
            "target": self.fingerprint,
            "knobs": [k.name for k in self.job.pipeline.knobs],
            "evaluator": self.job.evaluator.name if self.job.evaluator else None,
            "timed_at": {name: list(v.shape) for name, v in self.job.feed.items()},
            # What changes the candidates a run evaluates; not how long it runs or what it publishes.
            **{f.name: getattr(o, f.name) for f in fields(o) if f.name not in _NOT_SETTINGS},
        }

    def _commit(self, config: Mapping[str, Hashable], kind: str, evaluation: Evaluation, predicted=None) -> Record:
        with self._timed("commit"):
            return self.store.add(
                config, kind=kind, metrics=evaluation.metrics, fingerprint=self.fingerprint, seconds=evaluation.seconds,
                predicted=predicted, model_hash=evaluation.digest, error=evaluation.error, worker=evaluation.worker,
                per_example=evaluation.per_example,
            )  # fmt: skip

    def _once(self, build: Callable[[Path], Artifact], config: Mapping[str, Hashable], kind: str) -> Record:
        """The stored record of `config`, or evaluate and commit it now (reference, baselines: built
        and scored here, timed by the executor)."""
        found = self.store.find(config)
        if found is not None:
            return found
        return self._commit(config, kind, self.evaluator.evaluate(build, config, kind, self.evaluator.latency_by(self.executor)))

    # the search

    def run(self) -> CompileResult:
        o = self.options
        deadline = time.monotonic() + o.time_limit if o.time_limit is not None else None
        reference = self._once(self.evaluator.reference_artifact, defaults(self.job.pipeline.knobs), "reference")
        for name, build in self.job.baselines.items():
            self._once(build, {"baseline": name}, "baseline")
        references = References(reference, self._accuracy_reference(reference), o.confidence)
        goal = self._goal(references)
        algorithm = make_algorithm(o.algorithm, self.space, goal, o.population, o.seed)
        seen: set[str] = {config_key(reference.config)}
        validated, stalled, stopped_early = 0, 0, None
        self.progress("search", 0, o.budget, None)
        while validated < o.budget and stalled < 50 and stopped_early is None:
            with self._timed("ask"):
                asked = algorithm.ask()
            batch: list[tuple[np.ndarray, dict[str, Hashable]]] = []
            fresh: list[str] = []  # keys this run has not asked for before
            for x in asked:
                if validated + len(fresh) >= o.budget:
                    break
                config = self.space.decode(x)
                key = config_key(config)
                if deadline is not None and time.monotonic() > deadline and self.store.find(config) is None:
                    stopped_early = "time limit"
                    break
                if key not in seen:
                    seen.add(key)
                    fresh.append(key)
                batch.append((x, config))
            records = self._evaluate_batch(batch, algorithm, reference)
            for record in {config_key(r.config): r for r in records if config_key(r.config) in fresh}.values():
                validated += 1
                self.progress("search", validated, o.budget, record)
            stalled = 0 if fresh else stalled + 1
            if batch:
                with self._timed("tell"):
                    algorithm.tell(np.array([x for x, _ in batch]), np.array([self._metric_vector(r, references, goal) for r in records]))
        return self._finish(references, goal, stopped_early)

    def _evaluate_batch(self, batch, algorithm, reference: Record) -> list[Record]:
        """Records of the batch's configs, in its order: stored ones as they are, the others
        evaluated by the executor and committed as each arrives."""
        reference_key = config_key(reference.config)
        records: dict[str, Record] = {}
        todo = []
        for _, config in batch:
            key = config_key(config)
            found = self.store.find(config)
            if found is not None:
                records[key] = found
            elif key not in {config_key(c) for c in todo}:
                todo.append(config)
        evaluations = self.executor.evaluate(self.evaluator, todo)
        while True:
            with self._timed("wait"):
                config, evaluation = next(evaluations, (None, None))
            if config is None:
                break
            key = config_key(config)
            kind = "candidate" if key != reference_key else "reference"
            records[key] = self._commit(config, kind, evaluation, _readable(algorithm.predictions.get(key)))
        return [records[config_key(c)] for _, c in batch]

    def _accuracy_reference(self, reference: Record) -> Record:
        """The record accuracy drops are measured from: the model before tuning, if there is one
        (unless it scores near chance and the job lets the tuned model stand in)."""
        if self.job.accuracy_reference is None:
            return reference
        found = self.store.find({"baseline": self.job.accuracy_reference})
        if found is None or found.status != "ok":
            raise SimqError(f"the {self.job.accuracy_reference} model cannot be scored, so accuracy drops have no reference.")
        chance = self.job.evaluator.chance if self.job.evaluator is not None else None
        score, tuned = found.metrics.get("accuracy"), reference.metrics.get("accuracy")
        if self.job.reference_auto and chance is not None and score is not None and score <= chance + CHANCE_MARGIN:
            self.reference_note = (
                f"drops are measured from the tuned model ({tuned:.2f}): the model before tuning scores {score:.2f}, "
                f"near chance ({chance:.2f}); its head was likely new. --reference original measures from it anyway."
            )
            return reference
        if score is not None and tuned is not None:
            self.reference_note = f"drops are measured from the model before tuning ({score:.2f}); the tuned model scores {tuned:.2f}."
        return found

    def _goal(self, references: References) -> Goal:
        """The objectives, then each limited metric (``NAME@limit``) with its limit."""
        o = self.options
        metrics = list(o.objectives)
        limits: dict[int, float] = {}
        if o.max_accuracy_drop is not None:
            metrics.append("accuracy" + LIMITED)
            limits[len(metrics) - 1] = o.max_accuracy_drop
        if o.max_latency_ms is not None:
            metrics.append("latency" + LIMITED)
            limits[len(metrics) - 1] = o.max_latency_ms / references.fp32.metrics["latency_ms"]
        return Goal(tuple(metrics), tuple(range(len(o.objectives))), limits)

    def _metric_vector(self, record: Record, references: References, goal: Goal) -> np.ndarray:
        values = tracked_values(self.options.objective_table, goal.metrics, record, references)
        return np.array([FAILED if v is None else v for v in values])

    # the end: the published front and the report

    def _finish(self, references: References, goal: Goal, stopped_early: str | None) -> CompileResult:
        o = self.options
        candidates = [r for r in self.store.records() if r.kind in ("candidate", "reference") and r.status == "ok"]
        front = select_front(candidates, references, goal, o.objective_table, o.final_models, o.keep_slower)
        baselines = [r for r in self.store.records("baseline") if r.status == "ok"]
        publish(self.evaluator, self.executor, self.out, front, references.fp32, baselines, self.progress)
        self.evaluator.close()
        front = [self.store.get(r.id) for r in front]
        baselines = [self.store.get(r.id) for r in baselines]
        reference = self.store.get(references.fp32.id)
        references = References(reference, self.store.get(references.accuracy.id), o.confidence)
        if o.withhold_unconfirmed and o.max_accuracy_drop is not None:
            front = self._withhold(front, references, o.max_accuracy_drop)
        report, summary = write_report(self.out, self.store, o, self.job, references, baselines, front, goal, self.reference_note)
        shutil.rmtree(self.work, ignore_errors=True)
        evaluated = len([r for r in self.store.records() if r.kind == "candidate"])
        return CompileResult(
            self.out, front, reference, baselines, report, evaluated, stopped_early, dict(self.driver_steps), references.accuracy,
            self.reference_note, summary,
        )  # fmt: skip


    def _withhold(self, front: list[Record], references: References, allowed: float) -> list[Record]:
        """The front without models the test split refutes (their whole interval past `allowed`)."""
        kept = []
        for record in front:
            drop = accuracy_drop(record, references, final=True)
            if record.kind == "candidate" and drop is not None and "accuracy" in record.final and drop.beyond(allowed):
                shutil.rmtree(self.out / "pareto" / str(record.id), ignore_errors=True)
                self.store.set_final(record.id, None, record.final)
            else:
                kept.append(record)
        return kept


def _readable(predicted: Mapping[str, float] | None) -> dict[str, float] | None:
    """Predictions of the objectives, as the search saw them (normalised, lower is better)."""
    return dict(predicted) if predicted else None


def compile_model(
    job: Job,
    options: CompileOptions,
    out: Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> CompileResult:
    """Search `job`'s space for its target and write the Pareto-optimal artifacts to `out`.

    Args:
        resume: Continue the run already in `out` (finished evaluations are reused, not repeated).
        progress: Called as ``progress(phase, done, total, detail)`` (see `Progress`).
        executor: Runs the candidates' evaluations (`InProcessExecutor` by default).

    Raises:
        InvalidArgumentError: Bad options, or `out` holds another run (without `resume`).
        OutputError: `out` cannot be written.
    """
    options.check()
    make_out(out)
    compiler = _Compiler(job, options, out, resume, progress, executor)
    try:
        return compiler.run()
    finally:
        compiler.store.close()
