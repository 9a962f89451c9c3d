"""`compile`: search a pipeline's space for one target and emit the Pareto-optimal artifacts.

Order of work: the FP32 reference and the off-the-shelf baselines are evaluated once; the
search algorithm then asks for candidates, each built, lowered, evaluated, measured and
committed to the store as it finishes; finally the Pareto set is lowered into ``pareto/``,
re-measured in one interleaved pass with the reference and the baselines, scored on the final
split, and written up (``pareto.csv``, ``report.html``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidArgumentError, OutputError, SimqError
from simq.eval import Evaluator
from simq.ir import Structure, analyze
from simq.passes import Pipeline, defaults
from simq.search._algorithms import ALGORITHMS, FAILED, Goal, make_algorithm
from simq.search._pareto import pareto_front
from simq.search._report import write_report
from simq.search._space import SearchSpace
from simq.search._store import Record, Store, config_key
from simq.targets import Artifact, CostModel, Target, compare, features, interleave, lowering_summary

__all__ = ["OBJECTIVES", "CompileOptions", "CompileResult", "Job", "check_out", "compile_model"]

#: Objectives a user may ask for, and the metric each minimises.
OBJECTIVES = {"accuracy": "accuracy", "latency": "latency_ratio", "size": "size_ratio"}

Progress = Callable[[str, int, int], None]

#: Passes over the Pareto set and baselines in the final timing (median of their ratios).
FINAL_PASSES = 3


@dataclass(frozen=True)
class CompileOptions:
    """How to search.

    Attributes:
        objectives: Two or three of ``accuracy``, ``latency``, ``size``.
        budget: Candidates to validate (build, evaluate, measure), besides reference and baselines.
        algorithm: ``linas`` (default), ``nsga2`` or ``random``.
        population: Candidates validated per batch (generation).
        max_accuracy_drop: At most this many points below the reference's score.
        max_latency_ms: At most this latency.
        latency: ``measured`` on the target, or ``predicted`` by the job's cost model.
        time_limit: Seconds after which no new candidate is started (this invocation; a resumed
            run gets its own). The Pareto set of what was validated is then written as usual.
    """

    objectives: tuple[str, ...] = ("accuracy", "latency", "size")
    budget: int = 40
    algorithm: str = "linas"
    population: int = 10
    seed: int = 0
    max_accuracy_drop: float | None = None
    max_latency_ms: float | None = None
    latency: Literal["measured", "predicted"] = "measured"
    time_limit: float | None = None

    def check(self) -> None:
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown:
            raise InvalidArgumentError(
                f"unknown objective {unknown[0]!r}; choose two or three of {', '.join(OBJECTIVES)}."
            )
        if len(set(self.objectives)) != len(self.objectives) or not 2 <= len(self.objectives) <= 3:
            raise InvalidArgumentError("give two or three different objectives, e.g. accuracy,latency,size.")
        if self.budget < 1:
            raise InvalidArgumentError(f"--budget must be at least 1 (got {self.budget}).")
        if self.population < 2:
            raise InvalidArgumentError(f"--population must be at least 2 (got {self.population}).")
        if self.algorithm not in ALGORITHMS:
            raise InvalidArgumentError(f"unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}.")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise InvalidArgumentError("--max-accuracy-drop cannot be negative.")
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise InvalidArgumentError("--max-latency-ms must be positive.")
        if self.time_limit is not None and self.time_limit <= 0:
            raise InvalidArgumentError("--time-limit must be positive.")
        if self.latency not in ("measured", "predicted"):
            raise InvalidArgumentError("latency is 'measured' or 'predicted'.")

    @property
    def needs_accuracy(self) -> bool:
        return "accuracy" in self.objectives or self.max_accuracy_drop is not None


@dataclass
class Job:
    """What to compile, with everything computed once per model.

    Attributes:
        name: How the model is named in reports (e.g. ``zoo:minilm-tweets``).
        model: The FP32 model.
        structure: Its analysis at `signature`.
        pipeline: The passes and their knobs (the search space).
        target: Where it runs.
        feed: Batch-1 inputs for latency.
        evaluator: Scores candidates during the search (e.g. the validation split).
        final_evaluator: Scores the Pareto set and baselines at the end (e.g. the test split).
        baselines: Off-the-shelf recipes to compare with, by name: each builds its artifact into
            a folder (lazily), e.g. `Target.baselines`.
        cost_model: The target's latency predictor, for ``latency="predicted"``.
        extra_files: Copied into every Pareto artifact's folder, by name: what running it needs
            besides the model (the source's tokenizer, image processor, config).
        data: Where the examples came from, for manifests and reports.
        accuracy_reference: The baseline whose score accuracy constraints are measured from
            (the model before `simq tune`), instead of the FP32 reference's.
    """

    name: str
    model: ir.Model
    structure: Structure
    pipeline: Pipeline
    target: Target
    feed: Mapping[str, np.ndarray]
    evaluator: Evaluator | None = None
    final_evaluator: Evaluator | None = None
    baselines: Mapping[str, Callable[[Path], Artifact]] = field(default_factory=dict)
    cost_model: CostModel | None = None
    extra_files: Mapping[str, Path] = field(default_factory=dict)
    data: str = ""
    accuracy_reference: str | None = None


@dataclass(frozen=True)
class CompileResult:
    out: Path
    pareto: list[Record]
    reference: Record
    baselines: list[Record]
    report: Path
    evaluated: int
    #: Why the search stopped before its budget (``"time limit"``), or None.
    stopped_early: str | None = None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


class _Compiler:
    def __init__(self, job: Job, options: CompileOptions, out: Path, resume: bool, progress: Progress | None) -> None:
        self.job, self.options, self.out, self.progress = job, options, out, progress or (lambda *_: None)
        self.fingerprint = job.target.fingerprint().key()
        if options.needs_accuracy and job.evaluator is None:
            raise InvalidArgumentError("the accuracy objective or --max-accuracy-drop needs an evaluator.")
        if options.latency == "predicted" and job.cost_model is None:
            raise InvalidArgumentError("predicted latency needs a cost model for the target.")
        self.work = out / "work"
        self.work.mkdir(exist_ok=True)
        self.store = Store(out / Store.FILENAME)
        self.store.bind(self._settings(), resume)
        self.space = SearchSpace(job.pipeline)
        self._reference_runner = None
        self._reference_ms: list[float] = []

    def _settings(self) -> dict:
        o = self.options
        return {
            "model": self.job.name,
            "model_hash": hashlib.sha256(ir.to_proto(self.job.model).SerializeToString()).hexdigest(),
            "target": self.fingerprint,
            "knobs": [k.name for k in self.job.pipeline.knobs],
            "evaluator": self.job.evaluator.name if self.job.evaluator else None,
            **{k: v for k, v in asdict(o).items() if k not in ("budget", "time_limit")},
        }

    # evaluating one model

    def _candidate(self, config: Mapping[str, Hashable]) -> Callable[[Path], Artifact]:
        return lambda workdir: self.job.target.lower(self.job.pipeline.build(config), workdir)

    def _reference(self, workdir: Path) -> Artifact:
        return self.job.target.lower(self.job.model, workdir)

    def evaluate(
        self,
        build: Callable[[Path], Artifact],
        config: Mapping[str, Hashable],
        kind: str,
        predicted: Mapping[str, float] | None = None,
    ) -> Record:
        """The stored record of `config`, or build its artifact, score and time it, and commit it now."""
        found = self.store.find(config)
        if found is not None:
            return found
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        digest = error = None
        try:
            with tempfile.TemporaryDirectory(dir=self.work) as tmp:
                artifact = build(Path(tmp))
                digest = artifact.digest()
                metrics["size_bytes"] = float(artifact.size_bytes)
                if self.options.needs_accuracy:
                    metrics["accuracy"] = self.job.evaluator.evaluate(self.job.target.load(artifact), artifact)
                metrics.update(self._latency(config, kind, artifact, digest))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one candidate's failure (e.g. in a user evaluator) is recorded, not fatal
            error = _first_line(e)
            if kind == "reference":
                raise (
                    e if isinstance(e, SimqError) else SimqError(f"the FP32 model cannot be evaluated: {error}")
                ) from e
        return self.store.add(
            config, kind=kind, metrics=metrics, fingerprint=self.fingerprint, seconds=time.perf_counter() - start,
            predicted=predicted, model_hash=digest, error=error,
        )  # fmt: skip

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
                self._reference_runner = self.job.target.runner(self._reference(self.work / "reference"), self.job.feed)
            ratio, reference_ms = compare(self._reference_runner, self.job.target.runner(artifact, self.job.feed))
            if kind == "reference":
                # 1 by definition; timed against itself, a 0.05 ms model came out at 1.44 and was
                # then dominated by candidates slower than it.
                ratio = 1.0
            self._reference_ms.append(reference_ms)
            cached = (ratio, ratio * statistics.median(self._reference_ms))
            self.store.add_measurement(digest, self.fingerprint, *cached)
        return {"latency_ratio": cached[0], "latency_ms": cached[1]}

    # the search

    def run(self) -> CompileResult:
        o = self.options
        deadline = time.monotonic() + o.time_limit if o.time_limit is not None else None
        reference = self.evaluate(self._reference, defaults(self.job.pipeline.knobs), "reference")
        for name, build in self.job.baselines.items():
            self.evaluate(build, {"baseline": name}, "baseline")
        goal = self._goal(self._accuracy_reference(reference))
        algorithm = make_algorithm(o.algorithm, self.space, goal, o.population, o.seed)
        seen: set[str] = {config_key(reference.config)}
        validated, stalled, stopped_early = 0, 0, None
        self.progress("search", 0, o.budget)
        while validated < o.budget and stalled < 50 and stopped_early is None:
            asked = algorithm.ask()
            xs, ms = [], []
            new = 0
            for x in asked:
                if validated >= o.budget:
                    break
                config = self.space.decode(x)
                key = config_key(config)
                if deadline is not None and time.monotonic() > deadline and self.store.find(config) is None:
                    stopped_early = "time limit"
                    break
                if key not in seen:
                    seen.add(key)
                    validated += 1
                    new += 1
                kind = "candidate" if key != config_key(reference.config) else "reference"
                predicted = _readable(getattr(algorithm, "predictions", {}).get(key))
                record = self.evaluate(self._candidate(config), config, kind, predicted)
                xs.append(x)
                ms.append(self._metric_vector(record, reference, goal))
                self.progress("search", validated, o.budget)
            stalled = 0 if new else stalled + 1
            if xs:
                algorithm.tell(np.array(xs), np.array(ms))
        return self._finish(reference, goal, stopped_early)

    def _accuracy_reference(self, reference: Record) -> Record:
        """The record accuracy drops are measured from: the model before tuning, if there is one."""
        if self.job.accuracy_reference is None:
            return reference
        found = self.store.find({"baseline": self.job.accuracy_reference})
        if found is None or found.status != "ok":
            raise SimqError(f"the {self.job.accuracy_reference} model cannot be scored, so accuracy drops have no reference.")
        return found

    def _goal(self, reference: Record) -> Goal:
        o = self.options
        metrics = [OBJECTIVES[name] for name in o.objectives]
        limits: dict[int, float] = {}
        if o.max_accuracy_drop is not None:
            if "accuracy" not in metrics:
                metrics.append("accuracy")
            limits[metrics.index("accuracy")] = -(reference.metrics["accuracy"] - o.max_accuracy_drop)
        if o.max_latency_ms is not None:
            if "latency_ratio" not in metrics:
                metrics.append("latency_ratio")
            limits[metrics.index("latency_ratio")] = o.max_latency_ms / reference.metrics["latency_ms"]
        return Goal(tuple(metrics), tuple(range(len(o.objectives))), limits)

    def _metric_vector(self, record: Record, reference: Record, goal: Goal) -> np.ndarray:
        values = minimised(record, reference)
        return np.array([values.get(name, FAILED) for name in goal.metrics])

    # the end: Pareto set, re-measurement, artifacts, report

    def _finish(self, reference: Record, goal: Goal, stopped_early: str | None) -> CompileResult:
        candidates = [r for r in self.store.records() if r.kind in ("candidate", "reference") and r.status == "ok"]
        m = np.array([self._metric_vector(r, reference, goal) for r in candidates])
        feasible = np.all(goal.constraint_values(m) <= 0, axis=1)
        front = [candidates[i] for i in pareto_front(goal.objective_values(m), feasible)]
        baselines = [r for r in self.store.records("baseline") if r.status == "ok"]
        self._remeasure(front, reference, baselines)
        front = [self.store.get(r.id) for r in front]
        baselines = [self.store.get(r.id) for r in baselines]
        reference = self.store.get(reference.id)
        report = write_report(self.out, self.store, self.options, self.job, reference, baselines, front, goal)
        shutil.rmtree(self.work, ignore_errors=True)
        evaluated = len([r for r in self.store.records() if r.kind == "candidate"])
        return CompileResult(self.out, front, reference, baselines, report, evaluated, stopped_early)

    def _remeasure(self, front: list[Record], reference: Record, baselines: list[Record]) -> None:
        """Lower the Pareto set into ``pareto/``, then time it with the reference and the baselines
        in one interleaved pass and score everything on the final split."""
        staging = self.out / "pareto.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        summaries: dict[int, dict] = {}

        def shipped(record_id: int, config: Mapping[str, Hashable]) -> Callable[[Path], Artifact]:
            def build(folder: Path) -> Artifact:
                model = self.job.pipeline.build(config)
                summaries[record_id] = lowering_summary(model)
                return self.job.target.lower(model, folder)

            return build

        builders: dict[int, Callable[[Path], Artifact]] = {reference.id: self._reference}
        builders.update({r.id: shipped(r.id, r.config) for r in front if r.id != reference.id})
        builders.update({r.id: self.job.baselines[r.config["baseline"]] for r in baselines})
        steps = len(builders) * (2 if self.job.final_evaluator is not None else 1) + 1
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            self.progress("final", done, steps)

        self.progress("final", 0, steps)
        artifacts = {}
        for record_id, build in builders.items():
            folder = (
                staging / str(record_id) if record_id in {r.id for r in front} else self.work / f"final-{record_id}"
            )
            folder.mkdir(parents=True, exist_ok=True)
            artifacts[record_id] = build(folder)
            step()
        final: dict[int, dict[str, float]] = {i: {} for i in artifacts}
        if self.options.latency == "measured":
            # Each model timed in its own blocks with FP32 (a long interleave of every model would
            # stretch a round over seconds and loosen the pairing), in FINAL_PASSES passes over all
            # models, the median ratio kept: one comparison on a shared 2-core VM is now and then
            # off by 20-40 %, and passes minutes apart rarely are both.
            reference_runner = self.job.target.runner(artifacts[reference.id], self.job.feed)
            ratios: dict[int, list[float]] = {i: [] for i in artifacts if i != reference.id}
            reference_ms: list[float] = []
            for _ in range(FINAL_PASSES):
                for i, measured in ratios.items():
                    ratio, ms = compare(reference_runner, self.job.target.runner(artifacts[i], self.job.feed))
                    measured.append(ratio)
                    reference_ms.append(ms)
            if not reference_ms:  # only the reference is left to time
                reference_ms = interleave({"reference": reference_runner})["reference"]
            final[reference.id] |= {"latency_ratio": 1.0, "latency_ms": statistics.median(reference_ms)}
            for i, measured in ratios.items():
                final[i]["latency_ratio"] = statistics.median(measured)
                final[i]["latency_ms"] = final[i]["latency_ratio"] * statistics.median(reference_ms)
            del reference_runner
        step()
        if self.job.final_evaluator is not None:
            for i, a in artifacts.items():
                final[i]["accuracy"] = self.job.final_evaluator.evaluate(self.job.target.load(a), a)
                step()
        for record in front:
            for name, path in self.job.extra_files.items():
                shutil.copy2(path, staging / str(record.id) / name)
            manifest = {
                "id": record.id, "kind": record.kind, "model": self.job.name, "target": self.job.target.name,
                "fingerprint": asdict(self.job.target.fingerprint()), "config": record.config,
                "metrics": record.metrics, "final": final[record.id],
                "reference": {"metrics": reference.metrics, "final": final[reference.id]},
                "model_hash": artifacts[record.id].digest(),
                "files": [str(f.relative_to(staging / str(record.id))) for f in artifacts[record.id].files],
                "runtime_settings": dict(artifacts[record.id].settings),
                "inputs": {name: list(shape) for name, shape in self.job.structure.signature.items()},
                "data": self.job.data,
                "lowering": summaries.get(record.id, lowering_summary(self.job.model)),
            }  # fmt: skip
            (staging / str(record.id) / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            artifacts[record.id].save_index(staging / str(record.id))
        pareto = self.out / "pareto"
        old = self.out / "pareto.old"
        if pareto.exists():
            pareto.rename(old)
        staging.rename(pareto)
        shutil.rmtree(old, ignore_errors=True)
        for i, metrics in final.items():
            self.store.set_final(i, str(pareto / str(i)) if i in {r.id for r in front} else None, metrics)


def _readable(predicted: Mapping[str, float] | None) -> dict[str, float] | None:
    """Predictions in minimisation form, with accuracy turned back into a score."""
    if not predicted:
        return None
    return {name: -value if name == "accuracy" else value for name, value in predicted.items()}


def minimised(record: Record, reference: Record) -> dict[str, float]:
    """A record's metrics in minimisation form, relative to the reference where that reads better."""
    if record.status != "ok":
        return {}
    m = record.metrics
    values = {"size_ratio": m["size_bytes"] / reference.metrics["size_bytes"]}
    if "accuracy" in m:
        values["accuracy"] = -m["accuracy"]
    if "latency_ratio" in m:
        values["latency_ratio"] = m["latency_ratio"]
    elif "latency_ms" in m:
        values["latency_ratio"] = m["latency_ms"] / reference.metrics["latency_ms"]
    return values


def check_out(out: Path, resume: bool) -> None:
    """Fail now, before minutes of preparation, if `out` holds another run (without `resume`) or
    there is nothing to resume.

    Raises:
        InvalidArgumentError: As above.
        OutputError: `out` is a file.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder.")
    holds_run = (out / Store.FILENAME).is_file()
    if holds_run and not resume:
        raise InvalidArgumentError(f"{out} already holds a compile run; pass --resume to continue it or choose another --out.")
    if resume and not holds_run:
        raise InvalidArgumentError(f"{out} holds no compile run to resume; drop --resume to start one.")


def compile_model(
    job: Job, options: CompileOptions, out: Path, *, resume: bool = False, progress: Progress | None = None
) -> CompileResult:
    """Search `job`'s space for its target and write the Pareto-optimal artifacts to `out`.

    Args:
        resume: Continue the run already in `out` (finished evaluations are reused, not repeated).
        progress: Called as ``progress(phase, done, total)`` with phase ``"search"`` or ``"final"``.

    Raises:
        InvalidArgumentError: Bad options, or `out` holds another run (without `resume`).
        OutputError: `out` cannot be written.
    """
    options.check()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".simq-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write to {out}: {e.strerror or e}.") from None
    compiler = _Compiler(job, options, out, resume, progress)
    try:
        return compiler.run()
    finally:
        compiler.store.close()
