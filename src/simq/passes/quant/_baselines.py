"""The usual tools' recipes, as baselines: ONNX Runtime's fusions, dynamic and static INT8 quantization."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxscript.rewriter.ort_fusions import optimize_for_ort

__all__ = ["ort_dynamic", "ort_fused", "ort_static"]


def ort_dynamic(model: ir.Model, per_channel: bool = False) -> ir.Model:
    """ONNX Runtime `quantize_dynamic`: INT8 weights, activations quantized at run time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dynamic.onnx"
        quantize_dynamic(ir.to_proto(model), out, weight_type=QuantType.QInt8, per_channel=per_channel)
        return ir.load(out)


def ort_fused(model: ir.Model) -> tuple[ir.Model, int]:
    """onnxscript's ``optimize_for_ort`` as a user runs it (on a copy): the ORT transformer
    fusions (Attention, SkipLayerNormalization, BiasGelu, ...). Returns the model and the number
    of fusions applied."""
    fused, counts = optimize_for_ort(model.clone())
    return fused, sum(counts.values())


class _Reader(CalibrationDataReader):
    def __init__(self, batches: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return dict(next(self._batches, None) or {}) or None


def ort_static(model: ir.Model, batches: Iterable[Mapping[str, np.ndarray]]) -> ir.Model:
    """ONNX Runtime `quantize_static` on every supported node: QDQ, uint8 activations, per-channel
    int8 weights, min/max calibration (the "fully INT8" baseline of SimQ-NAS)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "static.onnx"
        quantize_static(
            ir.to_proto(model), out, _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        return ir.load(out)
