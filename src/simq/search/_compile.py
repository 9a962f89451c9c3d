"""`compile`: search a pipeline's space for one target and emit the Pareto-optimal artifacts.

Order of work: the FP32 reference and the off-the-shelf baselines are evaluated once; the
search algorithm then asks for candidates, each built, lowered, scored, timed (by an
`Executor`, in this process by default) and committed to the store as it finishes; finally the
models at or near the feasible front are re-timed, and the front chosen on those timings is
published (`simq.search._final`) and written up (``pareto.csv``, ``report.html``,
``summary.json``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import fields
from pathlib import Path


from simq.errors import InvalidArgumentError, SimqError
from simq.eval import EarlyStopping
from simq.ir import model_digest
from simq.passes import defaults
from simq.search._algorithms import Goal, make_algorithm
from simq.search._evaluate import Executor, InProcessExecutor, ModelEvaluator
from simq.search._final import contenders, publish, select_front
from simq.search._loop import SearchLoop
from simq.search._objectives import LIMITED, References, accuracy_drop
from simq.search._options import CompileOptions, CompileResult, Job
from simq.search._out import make_out
from simq.search._report import write_report
from simq.search._space import SearchSpace
from simq.search._store import SEARCH, Record, Store
from simq.targets import Artifact

__all__ = ["Progress", "compile_model"]

#: ``progress(phase, done, total, detail)``: phases ``"search"``, ``"final"``, ``"cost model"``;
#: `detail` is the record just committed (search) or what was done (final), else None.
Progress = Callable[..., None]


#: A model before tuning within this many points of chance had a head that was never trained.
CHANCE_MARGIN = 5.0
# Options that change how long a run goes on or what it publishes, not the candidates it evaluates:
# a resumed run may change them.
_NOT_SETTINGS = ("budget", "time_limit", "final_time_limit", "final_models", "keep_slower", "withhold_unconfirmed", "objective_table")


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
        # Latencies timed under other settings, or under settings not recorded, do not compare.
        self.store.bind(self._settings(), resume, required=("timing",))
        self.space = SearchSpace(job.pipeline)
        self.evaluator = ModelEvaluator(job, options, self.work, self.store, self.fingerprint)
        self.loop = SearchLoop(options, self.space, self.store, self.executor, self.evaluator, self.fingerprint, self.progress)
        self.reference_note: str | None = None

    def _settings(self) -> dict:
        o = self.options
        return {
            "model": self.job.name,
            "model_hash": model_digest(self.job.model),
            "target": self.fingerprint,
            "knobs": [k.name for k in self.job.pipeline.knobs],
            "evaluator": self.job.evaluator.name if self.job.evaluator else None,
            "timed_at": {name: list(v.shape) for name, v in self.job.feed.items()},
            "timing": self.job.target.timing_settings(),
            # What changes the candidates a run evaluates; not how long it runs or what it publishes.
            **{f.name: getattr(o, f.name) for f in fields(o) if f.name not in _NOT_SETTINGS},
        }

    def _once(self, build: Callable[[Path], Artifact], config: Mapping[str, Hashable], kind: str) -> Record:
        """The stored record of `config`, or evaluate and commit it now (reference, baselines: built
        and scored here, timed by the executor)."""
        found = self.store.find(config)
        if found is not None:
            return found
        return self.loop.commit(config, kind, self.evaluator.evaluate(build, config, kind, self.evaluator.latency_by(self.executor)))

    # the search

    def run(self) -> CompileResult:
        o = self.options
        reference = self._once(self.evaluator.reference_artifact, defaults(self.job.pipeline.knobs), "reference")
        for name, build in self.job.baselines.items():
            self._once(build, {"baseline": name}, "baseline")
        references = References(reference, self._accuracy_reference(reference), o.confidence)
        self.evaluator.early = self._early_stopping(references)
        goal = self._goal(references)
        algorithm = make_algorithm(o.algorithm, self.space, goal, o.population, o.seed)
        # The limit is the search's: measuring the reference and the baselines first (minutes on
        # bert-base) must not use it up before a single candidate ran.
        deadline = time.monotonic() + o.time_limit if o.time_limit is not None else None
        return self._finish(references, goal, self.loop.run(algorithm, references, goal, reference, deadline))

    def _early_stopping(self, references: References) -> EarlyStopping | None:
        """When candidates stop being scored: clearly past or clearly within the accuracy limit,
        judged paired with the accuracy reference's per-example scores (None: no limit, no such
        scores, or both turned off)."""
        o = self.options
        scores = references.accuracy.per_example.get(SEARCH)
        if not (o.early_rejection or o.early_acceptance) or o.max_accuracy_drop is None or scores is None:
            return None
        return EarlyStopping(scores, o.max_accuracy_drop, seed=o.seed, reject=o.early_rejection, accept=o.early_acceptance)

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

    # the end: the published front and the report

    def _finish(self, references: References, goal: Goal, stopped_early: str | None) -> CompileResult:
        o = self.options
        candidates = [r for r in self.store.records() if r.kind in ("candidate", "reference") and r.status == "ok"]
        baselines = [r for r in self.store.records("baseline") if r.status == "ok"]

        def choose(timed: list[Record]) -> list[Record]:
            return select_front(timed, references, goal, o.objective_table, o.final_models, o.keep_slower)

        pool = contenders(candidates, references, goal, o.objective_table, o.final_models, o.keep_slower)
        front = publish(self.evaluator, self.executor, self.out, pool, choose, references.fp32, baselines, self.progress)
        self.evaluator.close()
        front = [self.store.get(r.id) for r in front]
        baselines = [self.store.get(r.id) for r in baselines]
        reference = self.store.get(references.fp32.id)
        references = References(reference, self.store.get(references.accuracy.id), o.confidence)
        if o.withhold_unconfirmed and o.max_accuracy_drop is not None:
            front = self._withhold(front, references, o.max_accuracy_drop)
        report, summary = write_report(self.out, self.store, o, self.job, references, baselines, front, goal, self.reference_note, sum(r.kind != "reference" for r in pool))
        shutil.rmtree(self.work, ignore_errors=True)
        evaluated = len([r for r in self.store.records() if r.kind == "candidate"])
        return CompileResult(
            self.out, front, reference, baselines, report, evaluated, stopped_early, dict(self.loop.driver_steps), references.accuracy,
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
    options = options.resolved(job.evaluator, job.accuracy_reference is not None)
    make_out(out)
    compiler = _Compiler(job, options, out, resume, progress, executor)
    try:
        return compiler.run()
    finally:
        compiler.store.close()
