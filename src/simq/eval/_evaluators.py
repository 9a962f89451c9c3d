"""Accuracy on labelled data, fidelity to the reference model, and user evaluators.

An evaluator scores what ships: the artifact loaded in its target's runtime, handed over as
``run(inputs) -> outputs`` (an OpenVINO candidate is scored by OpenVINO on its ``openvino_model.xml``, not
by ONNX Runtime on the ONNX beside it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from simq.errors import InvalidArgumentError

if TYPE_CHECKING:
    from simq.eval._early import EarlyStopping
    from simq.targets import Artifact

__all__ = [
    "AccuracyEvaluator", "AgreementEvaluator", "Evaluator", "FidelityEvaluator", "Run", "Score", "classifier_logits",
    "onnx_runner", "padding_mask",
]  # fmt: skip

#: A loaded model: inputs by name (batch on axis 0) -> every output.
Run = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


def onnx_runner(path: Path, threads: int = 2) -> Run:
    """An ONNX file loaded in ONNX Runtime (CPU), as a `Run`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # The ort-cpu target's timing settings, as in every session SimQ keeps while it times others:
    # idle, it takes no cores from the one being timed.
    from simq.targets.ort_cpu import OrtCpuTarget

    for key, value in OrtCpuTarget(threads).timing_settings().items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda inputs: session.run(None, dict(inputs))


@dataclass(frozen=True)
class Score:
    """What an evaluator found.

    Attributes:
        value: The score in points (higher is better).
        per_example: Each example's score in the same points (their mean is `value`), where the
            evaluator has them: two models scored on the same examples then compare paired,
            which resolves differences far smaller than either score's own interval.
        signals: Finer measures of how far the model's outputs are from the reference model's,
            per the whole split: ``disagreement`` (% of examples whose top-1 differs) and
            ``divergence`` (mean KL divergence of the softmax outputs, in millinats).
        scored: How many examples were scored, when scoring stopped early (`EarlyStopping`);
            None when all were. Then `value` and `signals` are theirs and `per_example` is NaN
            for the others.
        settled: Why it stopped early: `simq.eval.BEYOND` or `simq.eval.WITHIN` the limit.
    """

    value: float
    per_example: np.ndarray | None = field(default=None, compare=False)
    signals: Mapping[str, float] = field(default_factory=dict)
    scored: int | None = None
    settled: str | None = None


class Evaluator(ABC):
    """Scores a loaded model; higher is better.

    Attributes:
        name: What the score is, for tables and plots ("accuracy", "fidelity", ...).
    """

    name: str

    @abstractmethod
    def evaluate(self, run: Run, artifact: Artifact | None = None) -> float:
        """Score the model `run` executes (`artifact` is what was loaded, if anything)."""

    def score(self, run: Run, artifact: Artifact | None = None) -> Score:
        """`evaluate` with what else the evaluator knows per example (see `Score`)."""
        return Score(self.evaluate(run, artifact))

    def score_early(self, run: Run, artifact: Artifact | None, stopping: EarlyStopping) -> Score:
        """`score`, stopping early where `stopping` finds the model clearly past or clearly
        within the allowed drop, for evaluators that score example by example (labels,
        agreement); others score everything."""
        return self.score(run, artifact)

    @property
    def chance(self) -> float | None:
        """The score of a model that knows nothing, where it is defined (accuracy: the most
        frequent label's share)."""
        return None

    @property
    def size(self) -> int | None:
        """How many examples it scores on, where it knows."""
        inputs = getattr(self, "inputs", None)
        return len(next(iter(inputs.values()))) if inputs else None

    def evaluate_onnx(self, path: Path) -> float:
        """Score an ONNX file run by ONNX Runtime."""
        return self.evaluate(onnx_runner(path))


def _batches(inputs: Mapping[str, np.ndarray], size: int):
    count = len(next(iter(inputs.values())))
    for start in range(0, count, size):
        yield {k: v[start : start + size] for k, v in inputs.items()}


def _outputs(run: Run, inputs: Mapping[str, np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Every output over all `inputs`, concatenated along the batch axis."""
    parts = [run(batch) for batch in _batches(inputs, batch_size)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _first_output(run: Run, inputs: Mapping[str, np.ndarray], batch_size: int, mask: str | None) -> np.ndarray:
    """The first output (one row per example) over all `inputs`.

    With `mask`, the name of a 0/1 padding mask padded on the right (``attention_mask``), the
    examples run in batches of similar length, each cut to its longest example: the outputs of
    the same model on the same tokens, without most of the padding's compute.
    """
    if mask is None:
        return _outputs(run, inputs, batch_size)[0]
    batches = _batch_rows(inputs, batch_size, mask)
    return _in_order(np.concatenate(batches), np.concatenate([_run_batch(run, inputs, index, mask) for index in batches]))


def _batch_rows(inputs: Mapping[str, np.ndarray], batch_size: int, mask: str | None) -> list[np.ndarray]:
    """The examples of each batch `_first_output` runs: by length with `mask`, else in order."""
    count = len(next(iter(inputs.values())))
    order = np.argsort(inputs[mask].sum(axis=1), kind="stable") if mask is not None else np.arange(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def _run_batch(run: Run, inputs: Mapping[str, np.ndarray], index: np.ndarray, mask: str | None) -> np.ndarray:
    """The first output on the examples `index`, cut to the longest of them by `mask`."""
    if mask is None:
        return run({k: v[index] for k, v in inputs.items()})[0]
    width = inputs[mask].shape[1]
    cut = max(int(inputs[mask][index].sum(axis=1).max()), 1)
    return run({k: v[index][:, :cut] if v.ndim >= 2 and v.shape[1] == width else v[index] for k, v in inputs.items()})[0]


def _in_order(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[rows] = values
    return out


def padding_mask(inputs: Mapping[str, np.ndarray], name: str = "attention_mask") -> str | None:
    """`name` if `inputs` hold it as a 0/1 mask padded on the right (what `AccuracyEvaluator` and
    `AgreementEvaluator` may cut batches by), else None."""
    mask = inputs.get(name)
    if mask is None or mask.ndim != 2 or not np.isin(mask, (0, 1)).all():
        return None
    return name if bool(np.all(mask[:, :-1] >= mask[:, 1:])) else None


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def classifier_logits(run: Run, inputs: Mapping[str, np.ndarray], batch_size: int = 64, mask: str | None = None) -> np.ndarray:
    """The first output of a classifier over `inputs`, one row of logits per example (batches cut
    by `mask` as `AccuracyEvaluator` cuts them)."""
    return _as_logits(_first_output(run, inputs, batch_size, mask))


def _as_logits(first_output: np.ndarray) -> np.ndarray:
    return first_output.reshape(len(first_output), -1).astype(np.float64)


class _Classifier(Evaluator):
    """A classifier's first output (one row of logits per example), compared per example with
    labels or with the reference model's logits on the same inputs."""

    def __init__(self, inputs: Mapping[str, np.ndarray], batch_size: int, mask: str | None, reference: np.ndarray | None) -> None:
        self.inputs, self.batch_size, self.mask = dict(inputs), batch_size, mask
        count = len(next(iter(self.inputs.values())))
        if reference is not None and len(reference) != count:
            raise InvalidArgumentError(f"the reference logits cover {len(reference)} examples, the inputs {count}.")
        self.reference = reference

    def _logits(self, run: Run) -> np.ndarray:
        return classifier_logits(run, self.inputs, self.batch_size, self.mask)

    def _hits(self, logits: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """Per example of `rows` (whose logits these are): right (True) or wrong."""
        raise NotImplementedError

    def _signals(self, logits: np.ndarray, rows: np.ndarray | slice = slice(None)) -> dict[str, float]:
        if self.reference is None:
            return {}
        reference = self.reference[rows]
        p = _log_softmax(reference)
        kl = (np.exp(p) * (p - _log_softmax(logits))).sum(-1)
        return {"disagreement": float(100 * np.mean(logits.argmax(-1) != reference.argmax(-1))), "divergence": float(1000 * kl.mean())}

    def evaluate(self, run: Run, artifact: Artifact | None = None) -> float:
        return self.score(run, artifact).value

    def score(self, run: Run, artifact: Artifact | None = None) -> Score:
        return self._score(self._logits(run))

    def _score(self, logits: np.ndarray) -> Score:
        hits = self._hits(logits, slice(None))
        return Score(float(100 * np.mean(hits)), 100 * hits.astype(np.float32), self._signals(logits))

    def score_early(self, run: Run, artifact: Artifact | None, stopping: EarlyStopping) -> Score:
        """`score`, on whole batches in `stopping`'s random order, stopping at a look that finds
        the model clearly past or within the allowed drop: then the score, the signals and the
        per-example scores (NaN where not scored) cover what was scored, `Score.scored` says how
        many examples and `Score.settled` which way."""
        batches = _batch_rows(self.inputs, self.batch_size, self.mask)
        order, stops = stopping.order(len(batches)), stopping.stops(len(batches))
        rows: list[np.ndarray] = []
        outputs: list[np.ndarray] = []
        for start, stop in zip([0, *stops[:-1]], stops):
            for b in order[start:stop]:
                rows.append(batches[b])
                outputs.append(_run_batch(run, self.inputs, batches[b], self.mask))
            seen, logits = np.concatenate(rows), _as_logits(np.concatenate(outputs))
            hits = self._hits(logits, seen)
            settled = stopping.settled(seen, 100 * hits.astype(np.float32)) if stop < len(batches) else None
            if settled is not None:
                per_example = np.full(self.size, np.nan, np.float32)
                per_example[seen] = 100 * hits
                return Score(float(100 * np.mean(hits)), per_example, self._signals(logits, seen), scored=len(seen), settled=settled)
        return self._score(_as_logits(_in_order(seen, np.concatenate(outputs))))


class AccuracyEvaluator(_Classifier):
    """Top-1 accuracy (percent) of the first output's arg-max against `labels`; per example, 100
    or 0; with a `reference` model, how far the outputs moved from its outputs (`Score.signals`)."""

    name = "accuracy"

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        labels: np.ndarray,
        batch_size: int = 64,
        mask: str | None = None,
        reference: np.ndarray | None = None,
    ) -> None:
        """`mask`: a right-padded mask input (see `padding_mask`) to cut batches by, for a model
        whose sequence length is dynamic; `reference`: the reference model's logits on `inputs`
        (`classifier_logits`)."""
        if len(labels) == 0 or any(len(v) != len(labels) for v in inputs.values()):
            raise InvalidArgumentError("accuracy needs as many labels as examples, and at least one.")
        super().__init__(inputs, batch_size, mask, reference)
        self.labels = np.asarray(labels)

    @property
    def chance(self) -> float:
        """The accuracy of always answering the most frequent label (percent)."""
        return float(100 * np.bincount(self.labels).max() / len(self.labels))

    def _hits(self, logits: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        return logits.argmax(-1) == self.labels[rows]


class AgreementEvaluator(_Classifier):
    """Top-1 agreement (percent) of the first output's arg-max with the reference model's: the
    score of a classifier on data without labels."""

    name = "agreement"

    def __init__(self, reference: Path | np.ndarray, inputs: Mapping[str, np.ndarray], batch_size: int = 64, mask: str | None = None) -> None:
        """`reference`: the reference model (an ONNX file) or its logits on `inputs`."""
        if not isinstance(reference, np.ndarray):
            reference = classifier_logits(onnx_runner(Path(reference)), inputs, batch_size, mask)
        super().__init__(inputs, batch_size, mask, reference)

    def _hits(self, logits: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        return logits.argmax(-1) == self.reference[rows].argmax(-1)


class FidelityEvaluator(Evaluator):
    """Mean cosine similarity (percent) of the model's outputs to the reference model's.

    Per example, every output is flattened and concatenated; the reference outputs are computed
    once, by ONNX Runtime on `reference`.
    """

    name = "fidelity"

    def __init__(self, reference: Path, inputs: Mapping[str, np.ndarray], batch_size: int = 16) -> None:
        self.inputs, self.batch_size = dict(inputs), batch_size
        self._reference = self._flat(_outputs(onnx_runner(reference), self.inputs, batch_size))

    @staticmethod
    def _flat(outputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([o.reshape(len(o), -1).astype(np.float64) for o in outputs], axis=1)

    def evaluate(self, run: Run, artifact: Artifact | None = None) -> float:
        return self.score(run, artifact).value

    def score(self, run: Run, artifact: Artifact | None = None) -> Score:
        out = self._flat(_outputs(run, self.inputs, self.batch_size))
        ref = self._reference
        cos = 100 * (out * ref).sum(1) / np.maximum(np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        return Score(float(cos.mean()), cos.astype(np.float32))
