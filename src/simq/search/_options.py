"""What a compile run is given and gives back: `CompileOptions`, `Job`, `CompileResult`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import onnx_ir as ir

from simq.data import DataOptions
from simq.errors import InvalidArgumentError
from simq.eval import Evaluator, default_confidence
from simq.ir import Structure
from simq.passes import Pipeline
from simq.search._algorithms import ALGORITHMS
from simq.search._objectives import OBJECTIVES, Objective
from simq.search._store import Record
from simq.targets import Artifact, CostModel, Target

__all__ = ["CompileOptions", "CompileResult", "Job", "JobSpec"]


@dataclass(frozen=True)
class JobSpec:
    """What to compile, as a user states it.

    Attributes:
        model: An .onnx file, a transformers folder, a Hugging Face id in the local cache, or
            ``zoo:NAME``.
        data: The user's data; without it a zoo model uses its own splits and any other model
            seeded synthetic inputs (scores are then fidelity to FP32 on them).
        input_shapes: Concrete shapes of inputs (``--input-shape``), overriding the defaults.
        batch_size, seq_len: The deployment shape latency is timed at: examples per call, and
            tokens per example for text inputs (default: batch 1 and the data's length).
        evaluator: ``module:function`` scoring artifacts instead of the data's labels.
        untrained: For a tuned model, also search widths and depths tuning did not train.
        head_refit: Refit a pruned candidate's linear classifier head on its own features of the
            data's labelled train rows (a model not tuned, with least-squares refits).
        reference: For a tuned model, what accuracy drops are measured from: the model before
            tuning (``original``), the tuned full model (``tuned``), or ``auto``: the original,
            unless it scores near chance (a head newly initialised), then the tuned model.
        cost_model: A folder holding the target's cost model for this job, trained there on first
            use from `cost_model_samples` measured sub-networks; the job then carries it (for
            predicted latency). None: no cost model.
        cache_dir: Where zoo models are built, and transformers exports (``exports/``) and
            baselines (``baselines/``) are kept; by default the user cache directory (zoo
            models under ``zoo/``).
    """

    model: str
    target: str = "ort-cpu"
    threads: int = 2
    data: DataOptions | None = None
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    batch_size: int | None = None
    seq_len: int | None = None
    evaluator: str | None = None
    prune: bool = True
    quantize: bool = True
    baselines: bool = True
    cache_dir: Path | None = None
    seed: int = 0
    cost_model: Path | None = None
    cost_model_samples: int = 30
    untrained: bool = False
    head_refit: bool = True
    reference: Literal["auto", "original", "tuned"] = "auto"

    def check(self) -> None:
        """Raises `InvalidArgumentError`, in the domain's words, for settings that cannot work."""
        if self.threads < 1:
            raise InvalidArgumentError("the target needs at least 1 thread.")
        if not self.prune and not self.quantize:
            raise InvalidArgumentError("without pruning and quantization there is nothing to search.")
        if self.cost_model_samples < 4:
            raise InvalidArgumentError("a cost model needs at least 4 measured samples.")
        for name, value in (("batch size", self.batch_size), ("sequence length", self.seq_len)):
            if value is not None and value < 1:
                raise InvalidArgumentError(f"the deployment {name} must be at least 1 (got {value}).")


@dataclass(frozen=True)
class CompileOptions:
    """How to search.

    Attributes:
        objectives: Two or three names of `objective_table` (``accuracy``, ``latency``, ``size``).
        budget: Candidates to validate (build, evaluate, measure), besides reference and baselines.
        algorithm: ``linas`` (default), ``nsga2`` or ``random``.
        population: Candidates validated per batch (generation); with `steady_state`, the
            candidates in flight at once.
        steady_state: Tell the search each result as it arrives and start the next candidate at
            once, instead of waiting for a whole generation (workers do not idle at the barrier;
            the order then follows the workers, so a resumed run reuses stored results but may
            ask other candidates). For algorithms told one result at a time (linas, random).
        max_accuracy_drop: At most this many points of the score's scale below the accuracy
            reference (1 by default; None: unbounded), judged paired on the same examples with
            `confidence`: a model is published when the one-sided upper bound of its drop is
            within it.
        confidence: Of the accuracy limit (0.5: the point estimate); None: by the size of the
            job's validation split (`simq.eval.default_confidence`: 0.9; 0.8 from 1,024
            examples, 0.7 from 2,048), fixed when the run starts (`resolved`).
        early_rejection: Stop scoring a candidate on the validation split once a quarter or half
            of it puts the candidate past the accuracy limit with 99.5 % confidence
            (`simq.eval.EarlyStopping`); scoring is most of what a candidate costs.
        early_acceptance: Likewise once it puts the candidate inside the limit with 99.5 %
            confidence: its accuracy is then that of the examples scored. None: on for a tuned
            folder, whose drops are measured from the model before tuning (its sub-networks are
            far above it: 22 of 30 candidates stopped, the compile took 11.2 min instead of 15.0
            and published the same fastest model, docs/EARLY_tuned.md); off otherwise (on the
            README job it stopped 3 of 30, docs/EARLY.md, and a stopped candidate's accuracy is
            optimistic: one accepted at -0.22 points on half the split was +0.13 on all of it);
            fixed when the run starts (`resolved`).
        max_latency_ms: At most this latency.
        latency: ``measured`` on the target, or ``predicted`` by the job's cost model.
        time_limit: Seconds of search after which no new candidate is started, counted once the
            reference and the baselines are measured (this invocation; a resumed run gets its
            own). The front of what was validated is then published as usual.
        final_time_limit: Seconds the final pass may spend timing the front (in rotation, to
            ±`simq.targets.TOLERANCE`, at most `simq.targets.MAX_ROUNDS` rounds each) once every
            model has `simq.targets.MIN_ROUNDS`; None: no limit. Five minutes leaves a MiniLM's
            final pass as it is (about 2 minutes) and bounds a BERT-base's: on openvino-cpu it
            took 12 of its run's 21 minutes without one, and with it the run took 12.4 minutes,
            published the same models, and every interval stayed within ±2 % (docs/RESULTS.md).
            Each manifest gives the rounds taken and the interval reached.
        final_models: At most this many models of the front are published (re-timed, re-scored).
        keep_slower: Publish models slower than FP32 too (kept for their size).
        withhold_unconfirmed: Take back published models whose whole test interval of the drop
            lies beyond the allowed drop (by default they are published and marked: withholding
            them selects on the test split, which then no longer confirms anything unbiasedly).
        objective_table: The objectives by name (`OBJECTIVES`; extend a copy to add one).
    """

    objectives: tuple[str, ...] = ("accuracy", "latency", "size")
    budget: int = 40
    algorithm: str = "linas"
    population: int = 10
    steady_state: bool = False
    seed: int = 0
    max_accuracy_drop: float | None = 1.0
    confidence: float | None = None
    early_rejection: bool = True
    early_acceptance: bool | None = None
    max_latency_ms: float | None = None
    latency: Literal["measured", "predicted"] = "measured"
    time_limit: float | None = None
    final_time_limit: float | None = 300.0
    final_models: int = 8
    keep_slower: bool = False
    withhold_unconfirmed: bool = False
    objective_table: Mapping[str, Objective] = field(default_factory=lambda: OBJECTIVES, compare=False)

    def check(self) -> None:
        """Raises `InvalidArgumentError`, in the domain's words, for options that cannot work."""
        unknown = [o for o in self.objectives if o not in self.objective_table]
        if unknown:
            raise InvalidArgumentError(f"unknown objective {unknown[0]!r}; choose two or three of {', '.join(self.objective_table)}.")
        if len(set(self.objectives)) != len(self.objectives) or not 2 <= len(self.objectives) <= 3:
            raise InvalidArgumentError("give two or three different objectives, e.g. accuracy,latency,size.")
        if self.budget < 1:
            raise InvalidArgumentError(f"the budget must be at least 1 candidate (got {self.budget}).")
        if self.population < 2:
            raise InvalidArgumentError(f"a population must hold at least 2 candidates (got {self.population}).")
        if self.final_models < 1:
            raise InvalidArgumentError("at least one model of the front must be published.")
        if self.algorithm not in ALGORITHMS:
            raise InvalidArgumentError(f"unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}.")
        if self.steady_state and not getattr(ALGORITHMS[self.algorithm], "incremental", False):
            told = ", ".join(name for name, a in ALGORITHMS.items() if getattr(a, "incremental", False))
            raise InvalidArgumentError(f"a steady-state search needs an algorithm told one result at a time ({told}); {self.algorithm} steps whole generations.")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise InvalidArgumentError("the accepted accuracy drop cannot be negative.")
        if self.confidence is not None and not 0.5 <= self.confidence < 1:
            raise InvalidArgumentError(f"the confidence of the accuracy limit is in [0.5, 1), not {self.confidence}.")
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise InvalidArgumentError("a latency bound must be positive.")
        if self.time_limit is not None and self.time_limit <= 0:
            raise InvalidArgumentError("a time limit must be positive.")
        if self.final_time_limit is not None and self.final_time_limit <= 0:
            raise InvalidArgumentError("the final pass's time limit must be positive.")
        if self.latency not in ("measured", "predicted"):
            raise InvalidArgumentError("latency is 'measured' or 'predicted'.")

    def resolved(self, evaluator: Evaluator | None, from_original: bool = False) -> CompileOptions:
        """These options with the confidence fixed (as given, or the default for `evaluator`'s
        validation split: `simq.eval.default_confidence`) and early acceptance (as given, or on
        when drops are measured `from_original`, the model before tuning)."""
        confidence = self.confidence if self.confidence is not None else default_confidence(evaluator.size if evaluator is not None else None)
        accept = self.early_acceptance if self.early_acceptance is not None else from_original
        return replace(self, confidence=confidence, early_acceptance=accept)

    def chosen_objectives(self) -> list[Objective]:
        return [self.objective_table[name] for name in self.objectives]

    @property
    def needs_accuracy(self) -> bool:
        return any(o.needs_evaluator for o in self.chosen_objectives()) or self.max_accuracy_drop is not None


@dataclass(frozen=True, eq=False)
class Job:
    """What to compile, with everything computed once per model; complete when built
    (`simq.search.prepare_job`), never changed afterwards.

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
        reference_auto: Measure from the FP32 model (the tuned one) instead when that baseline
            scores near chance (its head was newly initialised): what the user would ship is
            then the tuned model.
        notes: What preparing the job could not do and the report should say (a baseline left out).
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
    reference_auto: bool = False
    notes: tuple[str, ...] = ()


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
    #: (calls, seconds) of the driver per search step in this invocation: ``ask`` (LINAS: its
    #: predictors' refit and inner NSGA-II), ``tell``, ``commit`` (the store), ``wait`` (for
    #: the executor's evaluations; in this process, the evaluations themselves).
    driver_steps: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: The record accuracy drops are measured from (the reference, or the model before tuning).
    accuracy_reference: Record | None = None
    #: Why that record was chosen, where there was a choice.
    reference_note: str | None = None
    #: What ``summary.json`` holds: the headline, the table's rows, settings, notes.
    summary: dict = field(default_factory=dict)
