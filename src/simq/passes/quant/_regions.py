"""Static INT8 regions: which activations carry a Q/DQ pair, and which readers take the quantized copy.

Runtimes build integer kernel chains from QDQ graphs: ONNX Runtime turns
``DQ -> Conv -> Relu -> Q`` into QLinearConv, ``DQ, DQ -> Add -> Q`` into QLinearAdd, and so
on; OpenVINO folds the same patterns into its INT8 primitives. A Q/DQ pair only on the inputs of
each INT8 node (and none on its output) leaves a Conv dequantizing back to float and running in
float. So an activation is quantized where it enters an INT8 node and where it leaves an INT8
Conv or a region op (residual Add, pooling, Concat whose operands all come out of INT8 kernels);
a float reader then reads it dequantized: a precision change is a region boundary. A MatMul
needs no quantized output (ONNX Runtime runs ``DQ -> MatMul`` as MatMulIntegerToFloat), so its
output is quantized only where every reader is INT8 too.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx_ir as ir

from simq.ir import QuantizableNode, Structure

__all__ = ["SAME_RANGE", "int8_activations", "static_int8_plan"]

# Ops an INT8 region continues through (ORT has QLinear kernels for them, OpenVINO fuses them).
_REGION_OPS = frozenset({"Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool"})
# Activations that the producing kernel applies while requantizing its output.
_FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})
# INT8 ops that compute in integers only with a quantized output (no float-output kernel).
_NEEDS_QUANTIZED_OUTPUT = frozenset({"Conv"})
#: Ops whose output values are a selection of their input's: their output keeps the input's
#: quantization (ONNX Runtime then runs them on the integers and drops the Q/DQ around them).
SAME_RANGE = frozenset({"MaxPool"})


def _activation_inputs(node: ir.Node, q: QuantizableNode) -> list[int]:
    """Input indices of `node` that static INT8 quantizes (its activations, not its weight)."""
    return [0, 1] if q.kind == "dynamic" else [0]


def _tail(value: ir.Value) -> ir.Value:
    """`value`, or the output of the Relu/Clip chain that is its only reader."""
    while not value.is_graph_output():
        uses = list(value.uses())
        if len(uses) != 1 or uses[0].node.op_type not in _FUSED_ACTIVATIONS or uses[0].idx != 0:
            break
        value = uses[0].node.outputs[0]
    return value


def static_int8_plan(graph: ir.Graph, int8: Mapping[ir.Node, QuantizableNode]) -> dict[ir.Value, list[tuple[ir.Node, int]]]:
    """The activations to quantize when the nodes in `int8` run static INT8, each with the
    (reader, input index) pairs that read its quantized copy. Weights are not included.

    Args:
        int8: The INT8 nodes (Gathers excluded: they read an integer table directly), with
            what the analysis knows of them.
    """
    plan: dict[ir.Value, list[tuple[ir.Node, int]]] = {}
    for node, q in int8.items():
        for index in _activation_inputs(node, q):
            value = node.inputs[index]
            if value is not None and value.const_value is None:
                plan.setdefault(value, []).append((node, index))
    produced: dict[int, tuple[ir.Value, bool]] = {}  # by id: values leaving an INT8 kernel, and whether they must be quantized
    region_ops: set[int] = set()
    for node in graph:
        if node in int8:
            tail = _tail(node.outputs[0])
            produced[id(tail)] = (tail, node.op_type in _NEEDS_QUANTIZED_OUTPUT)
        elif node.op_type in _REGION_OPS:
            operands = [v for v in node.inputs if v is not None and v.const_value is None]
            joins = node.op_type in ("Add", "Concat")
            if operands and (len(operands) >= 2 or not joins) and all(id(v) in produced for v in operands):
                region_ops.add(id(node))
                tail = _tail(node.outputs[0])
                produced[id(tail)] = (tail, True)
    for value, required in produced.values():
        uses = list(value.uses())
        if value.is_graph_output() or not uses:
            continue
        if required or all(u.node in int8 or id(u.node) in region_ops for u in uses):
            readers = plan.setdefault(value, [])
            for use in uses:
                if (use.node, use.idx) not in readers and (use.node not in int8 or use.idx in _activation_inputs(use.node, int8[use.node])):
                    readers.append((use.node, use.idx))
    return plan


def int8_activations(model: ir.Model, structure: Structure) -> list[str]:
    """Names of every activation static INT8 may quantize in `model` (all of its nodes INT8):
    what calibration must cover so that any policy finds its ranges."""
    nodes = {node.name: node for node in model.graph}
    int8 = {nodes[q.node]: q for q in structure.quantizable if q.op_type != "Gather" and q.node in nodes}
    return [value.name for value in static_int8_plan(model.graph, int8)]
