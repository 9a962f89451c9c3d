"""Per-node static cost (parameters, MACs, bytes) and the nodes a target may quantize."""

from __future__ import annotations

import math
from collections.abc import Mapping

import onnx_ir as ir

from simq.ir._patterns import const, dynamic_inputs
from simq.ir._structure import NodeCost, QuantizableNode

__all__ = ["find_quantizable", "node_cost", "parameter_count", "weight_sizes"]


def _is_weight(value: ir.Value | None) -> bool:
    """Floating-point constants with more than one element are parameters; scalars are not."""
    return (
        value is not None
        and value.const_value is not None
        and value.dtype is not None
        and value.dtype.is_floating_point()
        and value.const_value.size > 1
    )


def weight_sizes(model: ir.Model) -> dict[str, int]:
    """Element count of each parameter tensor: floating-point initializers, scalars excluded."""
    return {v.name: v.const_value.size for v in model.graph.initializers.values() if _is_weight(v)}


def parameter_count(model: ir.Model) -> tuple[int, int]:
    """(parameters, bytes) over the model's distinct floating-point initializers."""
    weights = [v for v in model.graph.initializers.values() if _is_weight(v)]
    return sum(v.const_value.size for v in weights), sum(v.const_value.nbytes for v in weights)


def _macs(node: ir.Node, shapes: Mapping[str, tuple[int, ...]]) -> int:
    out = shapes.get(node.outputs[0].name) if node.outputs else None
    if out is None:
        return 0
    op = node.op_type
    if op in ("MatMul", "MatMulInteger"):
        a = shapes.get(node.inputs[0].name)
        return math.prod(out) * a[-1] if a else 0
    if op == "Gemm":
        a = shapes.get(node.inputs[0].name)
        if not a:
            return 0
        return math.prod(out) * (a[0] if node.attributes.get_int("transA", 0) else a[-1])
    if op in ("Conv", "ConvTranspose"):
        w = shapes.get(node.inputs[1].name)
        if not w:
            return 0
        if op == "Conv":  # each output element reads Cin/group x kernel inputs
            return math.prod(out) * math.prod(w[1:])
        x = shapes.get(node.inputs[0].name)  # each input element is spread over Cout/group x kernel
        return math.prod(x) * math.prod(w[1:]) if x else 0
    return 0


def _nbytes(value: ir.Value, shapes: Mapping[str, tuple[int, ...]]) -> int:
    shape = shapes.get(value.name)
    if shape is None or value.dtype is None:
        return 0
    return math.prod(shape) * value.dtype.itemsize


def node_cost(node: ir.Node, shapes: Mapping[str, tuple[int, ...]]) -> NodeCost:
    """Static cost of one node for the concrete `shapes` of the analysed signature."""
    weights = [v for v in node.inputs if _is_weight(v)]
    activations = dynamic_inputs(node) + [o for o in node.outputs if o is not None]
    return NodeCost(
        node=node.name,
        op_type=node.op_type,
        params=sum(v.const_value.size for v in weights),
        macs=_macs(node, shapes),
        weight_bytes=sum(v.const_value.nbytes for v in weights),
        activation_bytes=sum(_nbytes(v, shapes) for v in activations),
    )


#: An embedding table with at least this many rows is a vocabulary, whose rows each token reads
#: alone; smaller ones (positions, token types) are added to every token and INT4 there saves
#: nothing (docs/TABLES.md: minilm-tweets' model is 17.4 MB with the word table INT4, 18.1 with
#: every table INT4, at -0.07 and -0.68 test points against FP32).
VOCABULARY_ROWS = 1024


def find_quantizable(model: ir.Model) -> tuple[QuantizableNode, ...]:
    """Nodes with an INT8 kernel on our targets: Conv, Gemm, MatMul, and embedding Gathers."""
    found = []
    for node in model.graph:
        op = node.op_type
        if op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            weight = node.inputs[1]
            if _is_weight(weight):
                shape = weight.const_value.shape
                in_features = None
                if op in ("MatMul", "Gemm") and len(shape) == 2:
                    in_features = shape[1] if op == "Gemm" and node.attributes.get_int("transB", 0) else shape[0]
                found.append(QuantizableNode(node.name, op, "weighted", weight.name, in_features))
            elif op == "MatMul" and len(dynamic_inputs(node)) == 2:
                found.append(QuantizableNode(node.name, op, "dynamic", None))
        elif op == "Gather" and _is_weight(node.inputs[0]) and const(node.inputs[0]).ndim == 2:
            rows, width = const(node.inputs[0]).shape
            vocabulary = node.attributes.get_int("axis", 0) == 0 and rows >= VOCABULARY_ROWS
            found.append(QuantizableNode(node.name, op, "weighted", node.inputs[0].name, width if vocabulary else None))
    return tuple(found)
