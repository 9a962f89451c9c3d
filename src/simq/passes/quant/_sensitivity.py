"""Per-node quantization sensitivity: the output error when only that node is INT8."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from simq.ir import Structure
from simq.passes.quant._calibration import Calibration
from simq.passes.quant.quantize import QuantizePass, quant_knob

__all__ = ["output_error", "sensitivity"]


def _session(model: ir.Model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"])


def output_error(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float:
    """1 - mean cosine similarity between matching outputs, example by example."""
    cosines = []
    for want, got in zip(reference, outputs):
        a, b = want.reshape(len(want), -1).astype(np.float64), got.reshape(len(got), -1).astype(np.float64)
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosines.append(np.sum(a * b, axis=1) / np.maximum(denom, 1e-12))
    return float(1.0 - np.mean(np.concatenate(cosines)))


def sensitivity(
    model: ir.Model,
    structure: Structure,
    calibration: Calibration,
    batches: Sequence[Mapping[str, np.ndarray]],
    precision: str = "int8",
    on_node: Callable[[], None] | None = None,
) -> dict[str, float]:
    """For every node that can take `precision`: the output error with only that node quantized.

    Cheap by design (a few calibration batches, one session per node); later stages use it to
    seed the search and as a predictor feature.
    """
    reference_session = _session(model)
    reference = [reference_session.run(None, dict(feed)) for feed in batches]
    scores = {}
    for knob in QuantizePass.knobs(structure):
        if precision not in knob.domain:
            continue
        node = knob.name[len(quant_knob("")) :]
        candidate = model.clone()
        QuantizePass(structure, {knob.name: precision}, calibration)(candidate)
        session = _session(candidate)  # runs as is; cleanup would cost more than the run
        errors = [
            output_error(ref, session.run(None, dict(feed))) for ref, feed in zip(reference, batches)
        ]
        scores[node] = float(np.mean(errors))
        if on_node is not None:
            on_node()
    return scores
