"""Where a job's examples come from and the input signature they imply: the user's data, a zoo
model's own splits, or synthetic inputs within the model's input ranges; and the deployment shape
latency is timed at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import onnx_ir as ir

from simq import ir as sir
from simq.data import Dataset, Examples, SplitExamples, SyntheticExamples, load_data, model_label2id
from simq.errors import DataError, InvalidArgumentError
from simq.search._options import JobSpec

__all__ = ["ZooLike", "check_disjoint_roles", "check_not_trained_on", "examples_for"]


class ZooLike(Protocol):
    """Named models with their own data splits (`simq.zoo.Zoo`); the core never imports the zoo."""

    def path(self, name: str) -> Path: ...

    def entry(self, name: str) -> Any: ...

    def data(self, name: str, split: str) -> Dataset: ...

    def torch_source(self, name: str) -> sir.TorchSource: ...

    def texts(self, name: str, split: str) -> tuple[list[str], Any]: ...


def _fixed_batch(domains) -> int | None:
    fixed = {d.fixed(0) for d in domains if d.shape}
    fixed.discard(None)
    if len(fixed) > 1:
        raise InvalidArgumentError(f"the model's inputs fix different batch sizes ({sorted(fixed)}); SimQ needs one.")
    return fixed.pop() if fixed else None


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
        if examples.labelled:
            _check_label_range(model, examples)
    elif zoo is not None and (name := sir.zoo_model_of(spec.model)) is not None:
        entry = zoo.entry(name)
        implied = dict(entry.signature)
        roles = ("train", "calibration", "validation", "test")
        texts = entry.real_weights and "input_ids" in entry.signature  # stored as token ids; the content is the text
        contents = {role: (lambda r=role: [t.encode("utf-8") for t in zoo.texts(name, r)[0]]) for role in roles} if texts else None
        examples = SplitExamples(
            {role: (lambda r=role: zoo.data(name, r)) for role in roles}, entry.has_labels, f"the zoo's {name} splits", contents,
        )  # fmt: skip
    overrides = {k: v for k, v in implied.items() if k in names} | dict(spec.input_shapes)
    signature = _deployment_shape(model, domains, sir.resolve_signature(model, overrides), spec)
    if batch is not None:
        signature = {k: (batch, *v[1:]) for k, v in signature.items()}
    return examples or SyntheticExamples(domains, signature, spec.seed), signature, batch


def _check_label_range(model: ir.Model, examples: Examples) -> None:
    """Integer labels must be classes the model has: a label past its outputs scores nonsense."""
    outputs = list(model.graph.outputs)
    shape = outputs[0].shape if outputs else None
    classes = shape[-1] if shape is not None and len(shape) == 2 and isinstance(shape[-1], int) else None
    if classes is None:
        return
    for role in ("calibration", "validation", "test"):
        labels = examples.role(role).labels
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= classes):
            bad = int(labels.max() if labels.max() >= classes else labels.min())
            raise DataError(
                f"the {role} split has label {bad}, but the model has {classes} classes (0 to {classes - 1}); "
                "give labels the model knows (or names from its config's label2id)."
            )


def check_disjoint_roles(examples: Examples) -> None:
    """No example of the data may sit in two roles that must not meet (by content): test with
    anything else, validation with train or calibration's with train; else a score is measured on
    rows something was chosen or fitted on.

    Raises:
        DataError: Naming the two roles and how many rows they share.
    """
    hashes: dict[str, set[str]] = {}
    for role in ("train", "calibration", "validation", "test"):
        try:
            hashes[role] = set(examples.row_hashes(role))
        except DataError:
            continue  # a role the data does not have
    for first, second in (("train", "test"), ("validation", "test"), ("calibration", "test"), ("train", "validation")):
        shared = len(hashes.get(first, set()) & hashes.get(second, set()))
        if shared:
            raise DataError(
                f"{shared} examples of the {second} split are also in the {first} split; scores on them would be inflated. "
                "Deduplicate the data (or the split files)."
            )


def _deployment_shape(model: ir.Model, domains, signature: dict[str, tuple[int, ...]], spec: JobSpec) -> dict[str, tuple[int, ...]]:
    """`signature` with the batch and the token-sequence length a deployment runs (`JobSpec`)."""
    limit = sir.sequence_limit(model)
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




def check_not_trained_on(examples: Examples, tuned: Path) -> None:
    """Refuse to calibrate or score a tuned model on rows it was tuned on, whatever the data file
    or seed: `simq tune` recorded their content hashes in its tune.json.

    Raises:
        DataError: A role shares rows with the tuning's train rows (the count is named).
    """
    record = tuned / sir.TUNE_RECORD
    try:
        trained = set(json.loads(record.read_text()).get("data", {}).get("train_rows", []))
    except (OSError, ValueError, AttributeError):
        return
    if not trained:
        return
    for role in ("calibration", "validation", "test"):
        shared = len(trained.intersection(examples.row_hashes(role)))
        if shared:
            raise DataError(
                f"{shared} examples of the {role} split are rows this model was tuned on ({record}); calibrating or scoring "
                "on them would inflate every score. Give data without them, or the split files simq tune carved."
            )
