"""Static features of a compiled candidate for latency prediction, read from the IR alone, and
the summary of what a lowered model runs (fused kernels, precisions) for manifests and inspect."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import onnx_ir as ir

from simq.ir import Structure
from simq.passes.fuse import fusion_record
from simq.passes.quant import NOTES_METADATA, PRECISIONS, inference_precision

__all__ = ["FEATURE_OPS", "features", "lowering_summary", "node_precision"]

#: Ops whose cost is tracked per precision; everything else is pooled into "other".
FEATURE_OPS = ("MatMul", "Gemm", "Conv", "Gather", "Attention")
_ITEMSIZE = {ir.DataType.INT4: 0.5, ir.DataType.UINT4: 0.5}
# Kernels that stand for a feature op at a precision of their own.
_KERNELS = {
    "MatMulInteger": ("MatMul", "int8dyn"),
    "DynamicQuantizeMatMul": ("MatMul", "int8dyn"),
    "MatMulIntegerToFloat": ("MatMul", "int8dyn"),
    "QAttention": ("Attention", "int8dyn"),
    "MultiHeadAttention": ("Attention", "fp32"),
    "MatMulNBits": ("MatMul", "int4w"),
    "GatherBlockQuantized": ("Gather", "int4w"),
}


def _dequantized(value: ir.Value | None) -> ir.Value | None:
    """The integer tensor behind a DequantizeLinear output, if `value` is one."""
    producer = value.producer() if value is not None else None
    return producer.inputs[0] if producer is not None and producer.op_type == "DequantizeLinear" else None


def _op_and_precision(node: ir.Node) -> tuple[str, str]:
    """(feature op, precision) of a node; ("other", "fp32") for the rest."""
    if node.op_type in _KERNELS:
        return _KERNELS[node.op_type]
    if node.op_type in FEATURE_OPS:
        return node.op_type, node_precision(node)
    return "other", "fp32"


def node_precision(node: ir.Node) -> str:
    """How a MatMul/Gemm/Conv/Gather/Attention runs after quantization: fp32, int8w, int8dyn, int8 or int4w."""
    if node.op_type in _KERNELS:
        return _KERNELS[node.op_type][1]
    weight_index = 0 if node.op_type == "Gather" else 1
    source = _dequantized(node.inputs[weight_index]) if len(node.inputs) > weight_index else None
    if node.op_type == "Gather":
        users = [u.node.op_type for u in node.outputs[0].uses()]
        return "int8" if users == ["DequantizeLinear"] else "fp32"
    if source is not None and source.dtype in (ir.DataType.INT4, ir.DataType.UINT4):
        return "int4w"
    if _dequantized(node.inputs[0]) is not None:
        return "int8"
    if source is not None:
        return "int8w"
    return "fp32"


def lowering_summary(model: ir.Model) -> dict[str, Any]:
    """What a lowered model runs: its fused kernels (ops outside the default domain), how many
    MatMul/Gemm/Conv/Gather/Attention nodes run at each precision, the inference precision of
    the float parts, and what its fusion and quantization recorded (a fallback, a unit left FP32)."""
    fused = Counter(node.op_type for node in model.graph if node.domain not in ("", "ai.onnx"))
    precisions: Counter[str] = Counter()
    for node in model.graph:
        op, precision = _op_and_precision(node)
        if op != "other":
            precisions[f"{op} {precision}"] += 1
    summary: dict[str, Any] = {
        "fused_ops": dict(sorted(fused.items())),
        "precisions": dict(sorted(precisions.items())),
        "inference_precision": inference_precision(model),
    }
    record = fusion_record(model)
    if record is not None:
        summary["fusion"] = record
    notes = model.metadata_props.get(NOTES_METADATA)
    if notes:
        summary["notes"] = notes
    return summary


def _weight_bytes(node: ir.Node) -> float:
    """Bytes of the node's weights as stored: float, or the integer tensors behind DequantizeLinear
    (and an int8 embedding table read directly by a Gather)."""
    total = 0.0
    for index, value in enumerate(node.inputs):
        integer = _dequantized(value)
        source = integer if integer is not None else value
        if source is None or source.const_value is None or source.dtype is None:
            continue
        is_table = node.op_type == "Gather" and index == 0
        if integer is None and not is_table and not source.dtype.is_floating_point():
            continue  # shape constants and indices are not weights
        total += math.prod(source.const_value.shape) * _ITEMSIZE.get(source.dtype, source.dtype.itemsize)
    return total


def features(model: ir.Model, structure: Structure) -> dict[str, float]:
    """Per op type and precision: MACs, weight bytes and node counts; plus activation bytes,
    quantize ops, node count, transformer layers and input elements.

    `structure` is the analysis of this very model (for shapes and MACs).
    """
    out: dict[str, float] = {}
    for op in (*FEATURE_OPS, "other"):
        for precision in PRECISIONS:
            for kind in ("macs", "weight_bytes", "count"):
                out[f"{op}.{precision}.{kind}"] = 0.0
    costs = {c.node: c for c in structure.costs}
    activation_bytes = 0.0
    for node in model.graph:
        cost = costs.get(node.name)
        if cost is None:
            continue
        activation_bytes += cost.activation_bytes
        op, precision = _op_and_precision(node)
        out[f"{op}.{precision}.macs"] += cost.macs
        out[f"{op}.{precision}.weight_bytes"] += _weight_bytes(node)
        out[f"{op}.{precision}.count"] += 1
    out["activation_bytes"] = activation_bytes
    out["quantize_ops"] = float(sum(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") for n in model.graph))
    out["bf16"] = float(inference_precision(model) == "bf16")
    out["nodes"] = float(len(model.graph))
    out["layers"] = float(len(structure.layers))
    out["input_elements"] = float(sum(math.prod(s) for s in structure.signature.values()))
    return out


def vector(feature_map: Mapping[str, float], names: list[str]) -> list[float]:
    return [float(feature_map.get(n, 0.0)) for n in names]
