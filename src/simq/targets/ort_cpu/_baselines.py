"""What ONNX Runtime users run instead of SimQ, as baselines.

The bar for transformers is the recipe Optimum's CPU INT8 path produces: the model exported as
Optimum exports it (`simq.ir.ToolsExport`), ONNX Runtime's transformers optimizer
(EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu), then ``quantize_dynamic``
with per-tensor INT8 weights (QEmbedLayerNormalization, QAttention, MatMulInteger). Without a
PyTorch source to export, the same kernels come from SimQ's own fusion (`OrtFusionPass`, whose
mask rule lets ``quantize_dynamic`` turn attention into QAttention).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

from simq.ir import ROOT_LOGGER, Structure, ToolsExport, quiet
from simq.passes.fuse import FUSION_METADATA, OrtFusionPass
from simq.targets._api import Artifact

__all__ = ["RECIPE", "ort_baselines", "ort_dynamic", "ort_optimizer", "ort_static"]

#: The baseline users already run on ONNX Runtime (see the module docstring).
RECIPE = "ORT optimizer + dynamic INT8"
# ORT's optimizer knows these model types by name; BERT-like encoders (roberta, distilbert, ...)
# go through its bert fusions, as Optimum sends them.
_OPTIMIZER_TYPES = {"vit": "vit", "deit": "vit", "clip": "clip", "swin": "swin", "bart": "bart", "t5": "t5", "gpt2": "gpt2"}


def ort_dynamic(model: ir.Model, per_channel: bool = False) -> ir.Model:
    """ONNX Runtime `quantize_dynamic`: INT8 weights, activations quantized at run time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dynamic.onnx"
        # Types of contrib-op outputs (BiasGelu, SkipLayerNormalization) are unknown to ONNX shape
        # inference; they are float, as Optimum's quantizer assumes too.
        with quiet(ROOT_LOGGER):  # ORT's quantizer advises pre-processing on the root logger
            quantize_dynamic(
                ir.to_proto(model), out, weight_type=QuantType.QInt8, per_channel=per_channel,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )  # fmt: skip
        return ir.load(out)


def ort_optimizer(export: ToolsExport) -> ir.Model:
    """ONNX Runtime's transformers optimizer on a tools export, as Optimum's ``ORTOptimizer``
    calls it (heads and width from the config); what it fused is recorded in
    ``metadata_props[FUSION_METADATA]``, as SimQ's own fusion records its outcome."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(export.path), model_type=_OPTIMIZER_TYPES.get(export.model_type, "bert"),
        num_heads=export.num_heads, hidden_size=export.hidden_size,
    )  # fmt: skip
    counts = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    model = ir.from_proto(optimized.model)
    fused = bool(counts.get("Attention") or counts.get("MultiHeadAttention"))
    record = {"status": "fused" if fused else "unfused", "by": "onnxruntime.transformers.optimizer", "counts": counts}
    if not fused:
        record["reason"] = "ORT's transformers optimizer fused no attention in this export"
    model.metadata_props[FUSION_METADATA] = json.dumps(record)
    return model


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
        with quiet(ROOT_LOGGER):
            quantize_static(
                ir.to_proto(model), out, _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )  # fmt: skip
        return ir.load(out)


def ort_baselines(
    lower: Callable[[ir.Model, Path], Artifact],
    model: ir.Model,
    structure: Structure,
    batches: Sequence[Mapping[str, np.ndarray]],
    exports: Sequence[ToolsExport] = (),
) -> dict[str, Callable[[Path], Artifact]]:
    """Baselines by name, each building its artifact into a folder: plain dynamic and static INT8,
    and for transformers the fused FP32 model and `RECIPE` (on the tools export where there is
    one, on the model before tuning too; else on SimQ's own fusion). `lower` is the target's."""

    def lowered(build: Callable[[], ir.Model]) -> Callable[[Path], Artifact]:
        return lambda workdir: lower(build(), workdir)

    baselines = {
        "ORT dynamic INT8": lowered(lambda: ort_dynamic(model)),
        "ORT static INT8": lowered(lambda: ort_static(model, batches)),
    }
    if not structure.layers:
        return baselines
    by_label = {e.label: e for e in exports}
    own = by_label.get("")
    if own is not None:
        baselines["ORT optimizer FP32"] = lowered(lambda: ort_optimizer(own))
        baselines[RECIPE] = lowered(lambda: ort_dynamic(ort_optimizer(own)))
    else:
        fuse = OrtFusionPass(structure.signature)
        baselines["ORT fused FP32 (SimQ's fusion)"] = lowered(lambda: fuse(model).model)
        baselines[f"{RECIPE} (SimQ's fusion)"] = lowered(lambda: ort_dynamic(fuse(model).model))
    for export in exports:
        if export.label:
            baselines[f"{RECIPE}, {export.label}"] = lowered(lambda e=export: ort_dynamic(ort_optimizer(e)))
    return baselines
