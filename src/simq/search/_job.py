"""Preparing a compile job from what a user gives: a model source, a target, data, options.

Everything the CLI, tools and Python users need to assemble before a search: the checks that need
no model (data readable, columns present, evaluator importable) first, then the model, its
examples in their roles, the analysis, calibration, pruning statistics, the pipeline with the
target's lowering, the baselines and the evaluators.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx_ir as ir
import platformdirs

from simq import ir as sir
from simq.data import (
    DataOptions,
    Dataset,
    Examples,
    SplitExamples,
    SyntheticExamples,
    check_data,
    load_data,
    model_label2id,
    timing_feed,
)
from simq.errors import ArtifactError, InvalidArgumentError
from simq.eval import (
    load_evaluator,
    onnx_runner,
)
from simq.passes import Pipeline
from simq.passes.prune import collect_stats, elastic_record
from simq.passes.quant import calibrate
from simq.search._baselines import cached_baselines
from simq.search._compile import Job
from simq.search._exports import tools_exports
from simq.search._scoring import evaluators, model_digest
from simq.targets import Artifact, Target, TargetRegistry

__all__ = ["JobSpec", "PreparedJob", "ZooLike", "check_spec", "default_cache_root", "examples_for", "prepare_job"]

#: The baseline that is the model before `simq tune`, when compiling a tuned model.
ORIGINAL = "original (before tuning)"
#: Calibration batches (and their size, unless the model fixes its batch).
CALIBRATION_BATCHES, CALIBRATION_BATCH = 8, 16
EVALUATION_BATCH = 64
# Bumped when the baselines a target builds change, so that cached ones of the old set are redone.
_BASELINES_VERSION = "2"


def default_cache_root() -> Path:
    """Where SimQ keeps what it builds once: zoo models, exports, baselines."""
    return Path(platformdirs.user_cache_dir("simq"))


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


@dataclass
class PreparedJob:
    """A `Job` with what was found while preparing it.

    Attributes:
        source_dir: The transformers folder the model came from (tokenizer, processor, config),
            or None.
        examples: Where examples come from, in roles.
        batch_size: Examples per call where the model fixes its batch axis, else None.
    """

    job: Job
    examples: Examples
    source_dir: Path | None
    batch_size: int | None
    signature: dict[str, tuple[int, ...]]

    def describe(self) -> str:
        return self.examples.describe()


class ZooLike(Protocol):
    """Named models with their own data splits (`simq.zoo.Zoo`); the core never imports the zoo."""

    def path(self, name: str) -> Path: ...

    def entry(self, name: str) -> Any: ...

    def data(self, name: str, split: str) -> Dataset: ...

    def torch_source(self, name: str) -> sir.TorchSource: ...


def _cache_root(spec: JobSpec) -> Path:
    return Path(spec.cache_dir) if spec.cache_dir else default_cache_root()


def _fixed_batch(domains) -> int | None:
    fixed = {d.fixed(0) for d in domains if d.shape}
    fixed.discard(None)
    if len(fixed) > 1:
        raise InvalidArgumentError(f"the model's inputs fix different batch sizes ({sorted(fixed)}); SimQ needs one.")
    return fixed.pop() if fixed else None


#: Files of a model folder that running an artifact needs besides the model.
_RUNTIME_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
    "preprocessor_config.json",
)  # fmt: skip


def _runtime_files(*folders: Path | None) -> dict[str, Path]:
    """The tokenizer, processor and config files of the folders, by name (earlier folders win)."""
    found: dict[str, Path] = {}
    for folder in reversed([f for f in folders if f is not None]):
        found |= {name: folder / name for name in _RUNTIME_FILES if (folder / name).is_file()}
    return found


def check_spec(spec: JobSpec) -> None:
    """What can fail without loading the model, in about a second: the evaluator imports, the
    target exists, the data reads and has its columns."""
    if spec.evaluator:
        load_evaluator(spec.evaluator)
    TargetRegistry().get(spec.target, threads=spec.threads).fingerprint()
    if spec.data is not None:
        check_data(spec.data)


def examples_for(
    spec: JobSpec, model: ir.Model, source_dir: Path | None, zoo: ZooLike | None
) -> tuple[Examples, dict[str, tuple[int, ...]], int | None]:
    """Where a model's examples come from, the input signature they imply, and the batch size the
    model fixes (or None): the user's data; else a zoo model's own splits; else synthetic inputs
    within the model's input ranges."""
    domains = sir.input_domains(model)
    batch = _fixed_batch(domains)
    names = {d.name for d in domains}
    unknown = sorted(set(spec.input_shapes) - names)
    if unknown:
        raise InvalidArgumentError(f"--input-shape names {', '.join(unknown)}, but the model's inputs are {', '.join(sorted(names))}.")
    implied: dict[str, tuple[int, ...]] = {}  # what the examples say, under what the user says
    examples: Examples | None = None
    if spec.data is not None:
        label2id = model_label2id(source_dir or spec.data.tokenizer)  # a tokenizer folder is often the model's
        examples = load_data(spec.data, domains, model_dir=source_dir, label2id=label2id)
        implied = {name: (batch or 1, *array.shape[1:]) for name, array in examples.role("calibration").inputs.items()}
    elif zoo is not None and (name := sir.zoo_model_of(spec.model)) is not None:
        entry = zoo.entry(name)
        implied = dict(entry.signature)
        examples = SplitExamples(
            {role: (lambda r=role: zoo.data(name, r)) for role in ("train", "calibration", "validation", "test")},
            entry.has_labels, f"the zoo's {name} splits",
        )  # fmt: skip
    overrides = {k: v for k, v in implied.items() if k in names} | dict(spec.input_shapes)
    signature = _deployment_shape(model, domains, sir.resolve_signature(model, overrides), spec)
    if batch is not None:
        signature = {k: (batch, *v[1:]) for k, v in signature.items()}
    return examples or SyntheticExamples(domains, signature, spec.seed), signature, batch


def _deployment_shape(model: ir.Model, domains, signature: dict[str, tuple[int, ...]], spec: JobSpec) -> dict[str, tuple[int, ...]]:
    """`signature` with the batch and the token-sequence length a deployment runs (`JobSpec`)."""
    limit = int(model.metadata_props.get(sir.SEQUENCE_LIMIT, 0)) or None
    if spec.seq_len is not None and limit is not None and spec.seq_len > limit:
        raise InvalidArgumentError(f"--seq-len {spec.seq_len} is longer than the model's {limit} positions.")
    shaped = {}
    for d in domains:
        shape = list(signature[d.name])
        if spec.batch_size is not None and shape and d.fixed(0) is None:
            shape[0] = spec.batch_size
        if spec.seq_len is not None and len(shape) == 2 and d.is_integer and d.fixed(1) is None:
            shape[1] = spec.seq_len
        shaped[d.name] = tuple(shape)
    return shaped


def prepare_job(spec: JobSpec, zoo: ZooLike | None = None, status: Callable[[str], None] | None = None) -> PreparedJob:
    """Load, analyse and calibrate once; return the job `compile_model` searches.

    Args:
        zoo: Resolves ``zoo:NAME`` models and their splits.

    Raises:
        SimqError: Any problem with the model, the data, the target or the options, as one
            sentence; checks that need no model run first (`check_spec`).
    """
    status = status or (lambda _: None)
    check_spec(spec)
    target: Target = TargetRegistry().get(spec.target, threads=spec.threads)
    status(f"loading {spec.model}")
    path = sir.resolve_source(spec.model, zoo)
    model = sir.load(path, cache_dir=_cache_root(spec))
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

    status("analysing, calibrating, ranking units and fusing (once per model)")
    structure = sir.analyze(model, signature)
    calibration_data = examples.role("calibration")
    batches = [x for x, _ in calibration_data.batches(batch or CALIBRATION_BATCH)][: CALIBRATION_BATCHES if batch is None else None]
    calibration = calibrate(model, structure, batches) if spec.quantize else None
    # A tuned model is pruned first-k as it was trained, without statistics or refits.
    stats = collect_stats(model, structure, batches) if spec.prune and elastic is None else None
    pipeline = Pipeline(
        model, structure, calibration=calibration, calibration_batches=batches, stats=stats, supports=target.supports,
        lowering=target.lowering(signature), prune=spec.prune, quantize=spec.quantize,
    )  # fmt: skip
    if not pipeline.knobs:
        raise InvalidArgumentError(f"{spec.model} offers nothing to search: no prunable structure or quantizable node was found.")
    test = examples.role("test")
    feed = timing_feed(test.inputs, sir.input_domains(model), signature)
    baselines: dict[str, Callable[[Path], Artifact]] = {}
    notes: list[str] = []
    original = None
    if elastic is not None and path.is_dir() and (path / elastic["original"]).is_file():
        original = sir.load(path / elastic["original"])
    if spec.quantize and spec.baselines:
        exports: list[sir.ToolsExport] = []
        if structure.layers and batch is None:
            status("exporting the model as users' tools do (once per model)")
            exports, notes = _tools_exports(spec, model, original, path, source_dir, elastic, zoo, batches[0])
        key = "|".join([_BASELINES_VERSION, model_digest(model), target.fingerprint().key(), _batches_digest(batches)])
        baselines = cached_baselines(target.baselines(model, structure, batches, exports), _cache_root(spec) / "baselines", key)
    if original is not None:
        # "Drop" means below what the user had: the model before tuning sets the accuracy bar.
        baselines = {ORIGINAL: lambda workdir: target.lower(original, workdir), **baselines}
    status("scoring the FP32 model's outputs (once per model and split)")
    evaluator, final = evaluators(model, examples, batch or EVALUATION_BATCH, spec.evaluator, _cache_root(spec) / "outputs")
    job = Job(spec.model, model, structure, pipeline, target, feed, evaluator, final, baselines)
    job.notes = (*pipeline.lowering.notes, *notes)
    job.accuracy_reference = ORIGINAL if ORIGINAL in baselines else None
    job.extra_files = _runtime_files(spec.data.tokenizer if spec.data else None, source_dir)
    job.data = examples.describe()
    return PreparedJob(job, examples, source_dir, batch, signature)


def _tools_exports(
    spec: JobSpec, model: ir.Model, original: ir.Model | None, path: Path, source_dir: Path | None, elastic, zoo, batch: Mapping[str, np.ndarray]
) -> tuple[list[sir.ToolsExport], list[str]]:
    """The model (and the model before tuning) as users' tools export them (`tools_exports`)."""
    example = {k: v[:2] for k, v in batch.items()}
    with tempfile.TemporaryDirectory() as tmp:
        references = {"": (model_digest(model), onnx_runner(sir.save(model, Path(tmp) / "model.onnx")))}
        if original is not None:
            references["original"] = (model_digest(original), onnx_runner(sir.save(original, Path(tmp) / "original.onnx")))
        model_ref = str(path) if elastic is not None else spec.model
        return tools_exports(model_ref, source_dir, elastic, zoo, references, example, _cache_root(spec) / "exports" / "tools")


def _batches_digest(batches) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        for name in sorted(batch):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(batch[name]).tobytes())
    return digest.hexdigest()
