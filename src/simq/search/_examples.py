"""Where a job's examples come from and the input signature they imply: the user's data, a zoo
model's own splits, or synthetic inputs within the model's input ranges; and the deployment shape
latency is timed at."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import onnx_ir as ir

from simq import ir as sir
from simq.data import Dataset, Examples, SplitExamples, SyntheticExamples, load_data, model_label2id
from simq.errors import InvalidArgumentError
from simq.search._options import JobSpec

__all__ = ["ZooLike", "examples_for"]


class ZooLike(Protocol):
    """Named models with their own data splits (`simq.zoo.Zoo`); the core never imports the zoo."""

    def path(self, name: str) -> Path: ...

    def entry(self, name: str) -> Any: ...

    def data(self, name: str, split: str) -> Dataset: ...

    def torch_source(self, name: str) -> sir.TorchSource: ...


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


