"""Preparing a compile job from what a user gives: a model source, a target, data, options.

Everything the CLI, tools and Python users need to assemble before a search: the checks that need
no model (data readable, columns present, evaluator importable) first, then the model, its
examples in their roles, the analysis, calibration, pruning statistics, the pipeline with the
target's lowering, the baselines and the evaluators.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from simq import ir as sir
from simq.data import (
    Examples,
    check_data,
    timing_feed,
)
from simq.errors import ArtifactError, DataError, InvalidArgumentError, UnsupportedModelError
from simq.eval import (
    load_evaluator,
)
from simq.passes import Pipeline, quantized_ops
from simq.passes.prune import HeadRows, TrainedSpace, collect_stats, elastic_record
from simq.passes.quant import calibrate
from simq.search._baselines import cached_baselines
from simq.search._costmodel import cost_model_for
from simq.search._examples import ZooLike, check_disjoint_roles, check_not_trained_on, examples_for
from simq.search._exports import export_for_tools
from simq.search._layout import runtime_files, zoo_folder
from simq.search._options import Job, JobSpec
from simq.search._scoring import evaluators
from simq.targets import Artifact, Target, TargetRegistry

__all__ = ["PreparedJob", "check_spec", "prepare_job"]

#: The baseline that is the model before `simq tune`, when compiling a tuned model.
ORIGINAL = "original (before tuning)"
#: Calibration batches (and their size, unless the model fixes its batch).
CALIBRATION_BATCHES, CALIBRATION_BATCH = 8, 16
#: Train rows a pruned candidate's classifier head is refit on (`head_rows`).
HEAD_ROWS = 2048
EVALUATION_BATCH = 64
# Bumped when the baselines a target builds change, so that cached ones of the old set are redone.
_BASELINES_VERSION = "5"


@dataclass(frozen=True, eq=False)
class PreparedJob:
    """A `Job` with what was found while preparing it.

    Attributes:
        source_dir: The transformers folder the model came from (tokenizer, processor, config),
            or None.
        examples: Where examples come from, in roles.
        batch_size: Examples per call where the model fixes its batch axis, else None.
        warnings: What limits the search, for the user to read before it starts (also among
            the job's notes).
    """

    job: Job
    examples: Examples
    source_dir: Path | None
    batch_size: int | None
    signature: dict[str, tuple[int, ...]]
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.examples.describe()


def check_spec(spec: JobSpec) -> Target:
    """What can fail without loading the model, in about a second: the evaluator imports, the
    target exists, the data reads and has its columns. Returns the target (for `prepare_job`)."""
    spec.check()
    if spec.evaluator:
        load_evaluator(spec.evaluator)
    target = TargetRegistry().get(spec.target, threads=spec.threads)
    target.fingerprint()
    if spec.data is not None:
        check_data(spec.data)
    return target


def prepare_job(
    spec: JobSpec,
    zoo: ZooLike | None = None,
    status: Callable[[str], None] | None = None,
    *,
    checked: Target | None = None,
    progress: Callable[..., None] | None = None,
) -> PreparedJob:
    """Load, analyse and calibrate once; return the complete job `compile_model` searches.

    Args:
        zoo: Resolves ``zoo:NAME`` models and their splits.
        checked: The target `check_spec` returned, when the caller checked the spec already.
        progress: ``progress(phase, done, total)`` while the cost model's samples are measured.

    Raises:
        SimqError: Any problem with the model, the data, the target or the options, as one
            sentence; checks that need no model run first (`check_spec`).
    """
    status = status or (lambda _: None)
    target: Target = checked if checked is not None else check_spec(spec)
    status(f"loading {spec.model}")
    path = sir.resolve_source(spec.model, zoo)
    model = sir.load(path, cache_dir=sir.cache_root(spec.cache_dir))
    if quantized_ops(model):
        raise UnsupportedModelError(f"{spec.model} is quantized already ({', '.join(quantized_ops(model))}); give SimQ the float model it came from.")
    source_dir = path if path.is_dir() else None
    elastic = elastic_record(model)
    if elastic is not None and source_dir is not None and (source_dir / "model").is_dir():
        source_dir = source_dir / "model"  # a tune output folder: the tuned model's tokenizer and config
    with tempfile.TemporaryDirectory() as tmp:  # the runtime must take the model as given
        try:
            target.load(target.lower(model, Path(tmp)))
        except ArtifactError as e:
            raise ArtifactError(str(e).replace(str(Path(tmp) / "model.onnx"), spec.model).replace(tmp, spec.model)) from e
    if spec.data is not None:
        status(f"reading {spec.data.path}")
    examples, signature, batch = examples_for(spec, model, source_dir, zoo)
    if spec.data is not None:
        check_disjoint_roles(examples)
    if elastic is not None and path.is_dir():
        check_not_trained_on(examples, path)

    status("analysing, calibrating, ranking units and fusing (once per model)")
    structure = sir.analyze(model, signature)
    calibration_data = examples.role("calibration")
    batches = [x for x, _ in calibration_data.batches(batch or CALIBRATION_BATCH)][: CALIBRATION_BATCHES if batch is None else None]
    calibration = calibrate(model, structure, batches) if spec.quantize else None
    # A tuned model is pruned first-k as it was trained, without statistics or refits.
    stats = collect_stats(model, structure, batches) if spec.prune and elastic is None else None
    pipeline = Pipeline(
        model, structure, calibration=calibration, calibration_batches=batches, stats=stats, supports=target.supports,
        lowering=target.lowering(signature), trained=None if spec.untrained else TrainedSpace.of(model),
        head_rows=head_rows(examples, batch or EVALUATION_BATCH) if stats is not None and spec.head_refit else None,
        prune=spec.prune, quantize=spec.quantize,
    )  # fmt: skip
    if not pipeline.knobs:
        raise InvalidArgumentError(f"{spec.model} offers nothing to search: no prunable structure or quantizable node was found.")
    test = examples.role("test")
    feed = timing_feed(test.inputs, sir.input_domains(model), signature)
    baselines: dict[str, Callable[[Path], Artifact]] = {}
    notes: list[str] = []
    warnings: tuple[str, ...] = ()
    if spec.prune and structure.attention_blocks > len(structure.layers):
        warnings = (
            f"{structure.attention_blocks - len(structure.layers)} of {structure.attention_blocks} attention blocks are not in a transformer layer SimQ recognises"
            " (this attention or block form is not supported yet): their heads and FFN width are not searched, only precision,"
            " prunable channel groups and removable blocks.",
        )  # fmt: skip
    original = None
    if elastic is not None and path.is_dir() and (path / elastic["original"]).is_file():
        original = sir.load(path / elastic["original"])
    if spec.quantize and spec.baselines:
        exports: list[sir.ToolsExport] = []
        if structure.layers and batch is None:
            status("exporting the model as users' tools do (once per model)")
            model_ref = str(path) if elastic is not None else spec.model
            exports, notes = export_for_tools(model, original, model_ref, source_dir, elastic, zoo, batches[0], sir.cache_root(spec.cache_dir) / "exports" / "tools")
        key = "|".join([_BASELINES_VERSION, sir.model_digest(model), target.fingerprint().key(), _batches_digest(batches)])
        baselines = cached_baselines(target.baselines(model, structure, batches, exports), sir.cache_root(spec.cache_dir) / "baselines", key)
    if original is not None:
        # "Drop" means below what the user had: the model before tuning sets the accuracy bar.
        baselines = {ORIGINAL: lambda workdir: target.lower(original, workdir), **baselines}
    status("scoring the FP32 model's outputs (once per model and split)")
    evaluator, final, scoring_note = evaluators(model, examples, batch or EVALUATION_BATCH, spec.evaluator, sir.cache_root(spec.cache_dir) / "outputs")
    job = Job(
        spec.model, model, structure, pipeline, target, feed, evaluator, final, baselines,
        extra_files=runtime_files(spec.data.tokenizer if spec.data else None, source_dir, zoo_folder(spec.model, path)),
        data=examples.describe(), accuracy_reference=ORIGINAL if ORIGINAL in baselines and spec.reference != "tuned" else None,
        reference_auto=spec.reference == "auto",
        notes=(*warnings, *pipeline.notes, *notes, *([scoring_note] if scoring_note else [])),
    )  # fmt: skip
    if spec.cost_model is not None:
        job = replace(job, cost_model=cost_model_for(job, spec.cost_model, spec.cost_model_samples, spec.seed, progress))
    return PreparedJob(job, examples, source_dir, batch, signature, warnings)


def head_rows(examples: Examples, batch_size: int) -> HeadRows | None:
    """Up to `HEAD_ROWS` labelled rows of the train split, which no score is taken on, for
    refitting a pruned candidate's classifier head; None without labels or a train split."""
    if not examples.labelled:
        return None
    try:
        train = examples.role("train")
    except DataError:
        return None
    if train.labels is None or not len(train):
        return None
    feeds, labels = [], []
    for inputs, y in train.batches(batch_size):
        feeds.append(inputs)
        labels.append(y)
        if sum(map(len, labels)) >= HEAD_ROWS:
            break
    return HeadRows(feeds, np.concatenate(labels))


def _batches_digest(batches) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        for name in sorted(batch):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(batch[name]).tobytes())
    return digest.hexdigest()
