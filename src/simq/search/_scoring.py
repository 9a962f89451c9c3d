"""The evaluators of a job: what the search scores candidates by (the validation split) and what
the final pass confirms them on (the test split)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import onnx_ir as ir

from simq import ir as sir
from simq.data import Examples
from simq.eval import (
    AccuracyEvaluator,
    AgreementEvaluator,
    Evaluator,
    FidelityEvaluator,
    classifier_logits,
    load_evaluator,
    onnx_runner,
    padding_mask,
    resolvable_drop,
)

__all__ = ["evaluators", "resolution_note"]

#: Top-1 agreement means nothing when the FP32 model answers one class for at least this share of
#: the validation examples (a model that always answers it would agree as often): a classifier with
#: random weights does. Such a model is scored by output cosine instead.
ONE_CLASS_SHARE = 0.9


def evaluators(
    model: ir.Model, examples: Examples, batch_size: int, user: str | None, cache: Path
) -> tuple[Evaluator, Evaluator | None, str | None]:
    """(search, final, note): the user's function (``module:function``; no final split); else, for
    a classifier, accuracy on labels or top-1 agreement with FP32 without them, each comparing
    outputs with the FP32 model's logits; else output cosine to FP32. The note says why a
    classifier without labels is scored by output cosine (`ONE_CLASS_SHARE`).

    Args:
        cache: Where the FP32 model's logits on each split are kept (by model and inputs).
    """
    if user:
        return load_evaluator(user), None, None
    splits = [examples.role("validation"), examples.role("test")]
    if not examples.labelled and (examples.synthetic or not _is_classifier(model)):
        return *_fidelity(model, splits, batch_size), None
    masks = [_cut_by(model, s.inputs) for s in splits]
    logits = _reference_logits(model, [s.inputs for s in splits], batch_size, masks, cache)
    if examples.labelled:
        return *(AccuracyEvaluator(s.inputs, s.labels, batch_size, m, r) for s, m, r in zip(splits, masks, logits)), None
    share = np.bincount(logits[0].argmax(-1)).max() / len(logits[0])
    if share >= ONE_CLASS_SHARE:
        note = (
            f"scored by output cosine to FP32, not top-1 agreement: the FP32 model answers one class for {share:.0%} of the "
            "validation examples (random or untrained weights?), so agreement would not see what pruning or quantization changes"
        )
        return *_fidelity(model, splits, batch_size), note
    return *(AgreementEvaluator(r, s.inputs, batch_size, m) for s, m, r in zip(splits, masks, logits)), None


def _fidelity(model: ir.Model, splits, batch_size: int) -> tuple[FidelityEvaluator, FidelityEvaluator]:
    with tempfile.TemporaryDirectory() as tmp:
        reference = sir.save(model, Path(tmp) / "reference.onnx")
        search, final = (FidelityEvaluator(reference, s.inputs, batch_size) for s in splits)
        return search, final


def _reference_logits(model: ir.Model, splits, batch_size: int, masks, cache: Path) -> list[np.ndarray]:
    """The FP32 model's logits on each split, computed once and kept under `cache`."""
    digest = sir.model_digest(model)
    out, run = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for inputs, mask in zip(splits, masks):
            key = hashlib.sha256(digest.encode())
            for name in sorted(inputs):
                key.update(name.encode())
                key.update(np.ascontiguousarray(inputs[name]).tobytes())
            path = cache / f"{key.hexdigest()[:32]}.npy"
            if path.is_file():
                out.append(np.load(path))
                continue
            run = run or onnx_runner(sir.save(model, Path(tmp) / "reference.onnx"))
            logits = classifier_logits(run, inputs, batch_size, mask)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.stem + ".partial.npy")
            np.save(partial, logits)
            partial.replace(path)
            out.append(logits)
    return out


def _cut_by(model: ir.Model, inputs) -> str | None:
    """The padding mask a classifier's scoring batches may be cut by (tokens padded on the right,
    a dynamic sequence length; one row of logits per example), else None."""
    mask = padding_mask(inputs)
    if mask is None or not _is_classifier(model):
        return None
    graph_input = next((i for i in model.graph.inputs if i.name == mask), None)
    shape = graph_input.shape if graph_input is not None else None
    return mask if shape is not None and len(shape) == 2 and not isinstance(shape[1], int) else None


def _is_classifier(model: ir.Model) -> bool:
    """One output of (batch, classes): what top-1 agreement means something for."""
    outputs = list(model.graph.outputs)
    shape = outputs[0].shape if len(outputs) == 1 else None
    return shape is not None and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1


def resolution_note(evaluator: Evaluator | None, max_drop: float | None, confidence: float) -> str | None:
    """A warning when the search's split is too small for the accuracy limit: the margin its paired
    bound adds is at least half the allowed drop, so models as accurate as the reference are
    rejected (see `simq.eval.resolvable_drop`). None when the split is large enough."""
    if evaluator is None or max_drop is None or evaluator.size is None or isinstance(evaluator, FidelityEvaluator):
        return None
    margin = resolvable_drop(evaluator.size, confidence)
    if margin < max_drop / 2:
        return None
    return (
        f"the validation split holds {evaluator.size} examples: judged paired at {confidence:.0%} confidence it resolves drops "
        f"of about {margin:.1f} points, so a model within {max_drop:g} point{'s' if max_drop != 1 else ''} is accepted only if it "
        f"measures {max(max_drop - margin, 0):.1f} or better there; give more validation rows (about "
        f"{_rows_for(max_drop / 2, confidence)} resolve {max_drop / 2:g}) or a larger --max-accuracy-drop."
    )


def _rows_for(margin: float, confidence: float) -> int:
    rows = 100
    while resolvable_drop(rows, confidence) > margin:
        rows = int(rows * 1.25) + 1
    return rows
