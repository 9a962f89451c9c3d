"""Accuracy on labelled data, fidelity to the reference model, and user evaluators."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from simq.errors import InvalidArgumentError

__all__ = ["AccuracyEvaluator", "Evaluator", "FidelityEvaluator", "UserEvaluator", "load_evaluator"]


class Evaluator(ABC):
    """Scores an ONNX model file; higher is better.

    Attributes:
        name: What the score is, for tables and plots ("accuracy", "fidelity", ...).
    """

    name: str

    @abstractmethod
    def evaluate(self, onnx_path: Path) -> float: ...


def _session(path: Path, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _batches(inputs: Mapping[str, np.ndarray], size: int):
    count = len(next(iter(inputs.values())))
    for start in range(0, count, size):
        yield {k: v[start : start + size] for k, v in inputs.items()}


def _run(path: Path, inputs: Mapping[str, np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Every output of the model over all `inputs`, concatenated along the batch axis."""
    session = _session(path)
    parts = [session.run(None, batch) for batch in _batches(inputs, batch_size)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


class AccuracyEvaluator(Evaluator):
    """Top-1 accuracy (percent) of the first output's arg-max against `labels`, run by ONNX Runtime."""

    name = "accuracy"

    def __init__(self, inputs: Mapping[str, np.ndarray], labels: np.ndarray, batch_size: int = 64) -> None:
        if len(labels) == 0 or any(len(v) != len(labels) for v in inputs.values()):
            raise InvalidArgumentError("accuracy needs as many labels as examples, and at least one.")
        self.inputs, self.labels, self.batch_size = dict(inputs), np.asarray(labels), batch_size

    def evaluate(self, onnx_path: Path) -> float:
        logits = _run(onnx_path, self.inputs, self.batch_size)[0]
        return float(100 * np.mean(logits.reshape(len(self.labels), -1).argmax(-1) == self.labels))


class FidelityEvaluator(Evaluator):
    """Mean cosine similarity (percent) of the model's outputs to the reference model's.

    Per example, every output is flattened and concatenated; the reference outputs are computed
    once, on `reference`.
    """

    name = "fidelity"

    def __init__(self, reference: Path, inputs: Mapping[str, np.ndarray], batch_size: int = 16) -> None:
        self.inputs, self.batch_size = dict(inputs), batch_size
        self._reference = self._flat(_run(reference, self.inputs, batch_size))

    @staticmethod
    def _flat(outputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([o.reshape(len(o), -1).astype(np.float64) for o in outputs], axis=1)

    def evaluate(self, onnx_path: Path) -> float:
        out = self._flat(_run(onnx_path, self.inputs, self.batch_size))
        ref = self._reference
        cos = (out * ref).sum(1) / np.maximum(np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        return float(100 * cos.mean())


class UserEvaluator(Evaluator):
    """A user function ``f(onnx_path: str) -> float`` (higher is better), named by its spec."""

    def __init__(self, function: Callable[[str], float], name: str) -> None:
        self.function, self.name = function, name

    def evaluate(self, onnx_path: Path) -> float:
        value = self.function(str(onnx_path))
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"evaluator {self.name} returned {value!r}, not a number.") from None
        if not np.isfinite(value):
            raise InvalidArgumentError(f"evaluator {self.name} returned {value}, not a finite number.")
        return value


def load_evaluator(spec: str) -> UserEvaluator:
    """Import ``module:function`` (the module must be importable, e.g. on ``PYTHONPATH``)."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise InvalidArgumentError(f"--evaluator {spec!r} is not module:function, e.g. my_eval:accuracy.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InvalidArgumentError(f"cannot import evaluator module {module_name!r}: {e}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise InvalidArgumentError(f"module {module_name!r} has no function {function_name!r}.")
    return UserEvaluator(function, function_name)
