"""Static features of a compiled candidate for latency prediction, read from the IR alone."""

from __future__ import annotations

import math
from collections.abc import Mapping

import onnx_ir as ir

from simq.ir import Structure

__all__ = ["FEATURE_OPS", "PRECISION_NAMES", "features", "node_precision"]

#: Ops whose cost is tracked per precision; everything else is pooled into "other".
FEATURE_OPS = ("MatMul", "Gemm", "Conv", "Gather")
PRECISION_NAMES = ("fp32", "int8", "int4w")
_ITEMSIZE = {ir.DataType.INT4: 0.5, ir.DataType.UINT4: 0.5}


def _dequantized(value: ir.Value | None) -> ir.Value | None:
    """The integer tensor behind a DequantizeLinear output, if `value` is one."""
    producer = value.producer() if value is not None else None
    return producer.inputs[0] if producer is not None and producer.op_type == "DequantizeLinear" else None


def node_precision(node: ir.Node) -> str:
    """How a MatMul/Gemm/Conv/Gather runs after quantization: fp32, int8 or int4w."""
    weight_index = 0 if node.op_type == "Gather" else 1
    source = _dequantized(node.inputs[weight_index]) if len(node.inputs) > weight_index else None
    if node.op_type == "Gather":
        users = [u.node.op_type for u in node.outputs[0].uses()]
        return "int8" if users == ["DequantizeLinear"] else "fp32"
    if source is not None and source.dtype in (ir.DataType.INT4, ir.DataType.UINT4):
        return "int4w"
    if source is not None or _dequantized(node.inputs[0]) is not None:
        return "int8"
    return "fp32"


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
        for precision in PRECISION_NAMES:
            for kind in ("macs", "weight_bytes", "count"):
                out[f"{op}.{precision}.{kind}"] = 0.0
    costs = {c.node: c for c in structure.costs}
    activation_bytes = 0.0
    for node in model.graph:
        cost = costs.get(node.name)
        if cost is None:
            continue
        activation_bytes += cost.activation_bytes
        op = node.op_type if node.op_type in FEATURE_OPS else "other"
        precision = node_precision(node) if op != "other" else "fp32"
        out[f"{op}.{precision}.macs"] += cost.macs
        out[f"{op}.{precision}.weight_bytes"] += _weight_bytes(node)
        out[f"{op}.{precision}.count"] += 1
    out["activation_bytes"] = activation_bytes
    out["quantize_ops"] = float(sum(n.op_type == "QuantizeLinear" for n in model.graph))
    out["nodes"] = float(len(model.graph))
    out["layers"] = float(len(structure.layers))
    out["input_elements"] = float(sum(math.prod(s) for s in structure.signature.values()))
    return out


def vector(feature_map: Mapping[str, float], names: list[str]) -> list[float]:
    return [float(feature_map.get(n, 0.0)) for n in names]
