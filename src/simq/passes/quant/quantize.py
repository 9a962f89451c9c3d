"""QuantizePass: run each quantizable node in FP32, INT8 (QDQ) or INT4 weights."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import ml_dtypes
import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import META_KEPT, QuantizableNode, Structure
from simq.passes._edit import array_of
from simq.passes._knobs import Knob, check_config
from simq.passes.quant._calibration import Calibration

__all__ = ["INT4_BLOCK", "PRECISIONS", "QuantizePass", "quant_knob"]

#: Every precision a node can take.
PRECISIONS = ("fp32", "int8", "int4w")
#: Weights per INT4 block along the input axis (MatMulNBits-friendly).
INT4_BLOCK = 32
# DequantizeLinear with block_size and INT4 tensors arrived in opset 21.
_INT4_OPSET = 21

Supports = Callable[[str, str], bool]


def quant_knob(node: str) -> str:
    return f"quant.{node}"


def _domain(q: QuantizableNode, in_features: int | None, supports: Supports | None) -> tuple[str, ...]:
    options = ["fp32", "int8"]
    if q.kind == "weighted" and q.op_type in ("MatMul", "Gemm") and in_features and in_features % INT4_BLOCK == 0:
        options.append("int4w")
    return tuple(p for p in options if p == "fp32" or supports is None or supports(q.op_type, p))


class QuantizePass(ir.passes.InPlacePass):
    """Quantizes every node its policy (``quant.<node>`` knobs) does not leave in ``fp32``.

    ``int8``: static QDQ, the ONNX form both ONNX Runtime and OpenVINO fuse into integer
    kernels: each activation input goes through QuantizeLinear/DequantizeLinear (uint8,
    asymmetric, per tensor, range from `calibration`; inputs shared by several quantized nodes
    share one pair), the weight is stored as int8 with one symmetric scale per output channel
    and read through DequantizeLinear. ``int4w``: weight-only, int4 in blocks of `INT4_BLOCK`
    along the input axis, read through a blocked DequantizeLinear (opset 21); activations stay
    FP32 (ONNX Runtime fuses this into MatMulNBits). An embedding Gather in ``int8`` reads an
    int8 table and dequantizes the gathered rows.

    Changes: inserts Q/DQ nodes and replaces float weights by integer ones; the model's default
    opset becomes 21 when an INT4 weight is added.

    Args:
        structure: The analysis of the model (before or after pruning: node names survive).
        policy: Knob values ``quant.<node> -> precision``; nodes left out stay FP32.
        calibration: Activation ranges; a range narrowed by pruning is taken over the
            channels kept (recorded by the pruning passes in ``value.meta``).
        supports: The target's ``supports(op_type, precision)``; other precisions are errors.
    """

    def __init__(
        self,
        structure: Structure,
        policy: Mapping[str, Hashable],
        calibration: Calibration,
        supports: Supports | None = None,
    ) -> None:
        super().__init__()
        self.structure, self.calibration, self.supports = structure, calibration, supports
        self.policy = check_config(policy, self.knobs(structure, supports))

    @staticmethod
    def knobs(structure: Structure, supports: Supports | None = None) -> list[Knob]:
        """One knob per quantizable node; the domain is what the node and the target allow."""
        knobs = []
        for q in structure.quantizable:
            domain = _domain(q, q.in_features, supports)
            if len(domain) > 1:
                knobs.append(Knob(quant_knob(q.node), domain, "fp32", f"precision of {q.op_type} {q.node}"))
        return knobs

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        shared: dict[str, ir.Value] = {}
        modified = False
        for q in self.structure.quantizable:
            precision = self.policy.get(quant_knob(q.node), "fp32")
            if precision == "fp32":
                continue
            node = graph.node(q.node)
            if q.op_type == "Gather":
                _quantized_table(graph, node)
            elif precision == "int8":
                inputs = (0, 1) if q.kind == "dynamic" else (0,)
                for index in inputs:
                    node.replace_input_with(index, self._qdq(graph, node, node.inputs[index], shared))
                if q.kind == "weighted":
                    _dequantized_weight(graph, node, q, int4=False)
            else:
                _dequantized_weight(graph, node, q, int4=True)
                _require_opset(model, _INT4_OPSET)
            modified = True
        return ir.passes.PassResult(model, modified)

    def _qdq(self, graph: ir.Graph, node: ir.Node, value: ir.Value, shared: dict[str, ir.Value]) -> ir.Value:
        if value.name in shared:
            return shared[value.name]
        if value.name not in self.calibration.ranges:
            raise InvalidConfigError(f"no calibration range for {value.name}; calibrate this model before quantizing {node.name}.")
        low, high = self.calibration.ranges[value.name].bounds(value.meta.get(META_KEPT))
        scale = np.float32(max(high - low, 1e-8) / 255.0)
        zero_point = np.uint8(np.clip(np.round(-low / scale), 0, 255))
        s = _constant(graph, f"{value.name}.scale", np.array(scale, np.float32))
        z = _constant(graph, f"{value.name}.zero_point", np.array(zero_point, np.uint8))
        quantize = ir.node("QuantizeLinear", [value, s, z], name=f"{value.name}.quantize")
        dequantize = ir.node("DequantizeLinear", [quantize.outputs[0], s, z], name=f"{value.name}.dequantize")
        quantize.outputs[0].name, dequantize.outputs[0].name = f"{value.name}.q", f"{value.name}.dq"
        dequantize.outputs[0].dtype, dequantize.outputs[0].shape = value.dtype, value.shape
        graph.insert_before(node, [quantize, dequantize])
        shared[value.name] = dequantize.outputs[0]
        return dequantize.outputs[0]


def _weight_axes(node: ir.Node, q: QuantizableNode) -> tuple[int, int]:
    """(output-channel axis, input axis) of a node's weight."""
    if q.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        return 0, 1
    if q.op_type == "Gemm" or q.op_type == "MatMul":
        return 1, 0
    return 0, 1  # Conv: (out, in, kh, kw)


def _constant(graph: ir.Graph, name: str, array: np.ndarray, dtype: ir.DataType | None = None) -> ir.Value:
    base, n = name, 0
    while name in graph.initializers:
        n += 1
        name = f"{base}.{n}"
    tensor = ir.tensor(array, dtype=dtype, name=name)
    value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=tensor.shape, const_value=tensor)
    graph.register_initializer(value)
    return value


def _dequantized_weight(graph: ir.Graph, node: ir.Node, q: QuantizableNode, *, int4: bool) -> None:
    """Replace the node's float weight by an integer one read through DequantizeLinear."""
    weight = node.inputs[1]
    w = array_of(weight).astype(np.float32)
    out_axis, in_axis = _weight_axes(node, q)
    if int4:
        blocks = w.shape[in_axis] // INT4_BLOCK
        shape = list(w.shape)
        shape[in_axis:in_axis + 1] = [blocks, INT4_BLOCK]
        grouped = w.reshape(shape)
        scale = np.abs(grouped).max(axis=in_axis + 1) / 7.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        quantized = np.clip(np.round(grouped / np.expand_dims(scale, in_axis + 1)), -8, 7).reshape(w.shape)
        data = _constant(graph, f"{weight.name}.int4", quantized.astype(ml_dtypes.int4), ir.DataType.INT4)
        s = _constant(graph, f"{weight.name}.scale", scale)
        dequantize = ir.node("DequantizeLinear", [data, s], attributes={"axis": in_axis, "block_size": INT4_BLOCK})
    else:
        reduce = tuple(i for i in range(w.ndim) if i != out_axis)
        scale = np.abs(w).max(axis=reduce) / 127.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        quantized = np.clip(np.round(w / np.expand_dims(scale, reduce)), -127, 127).astype(np.int8)
        data = _constant(graph, f"{weight.name}.int8", quantized)
        s = _constant(graph, f"{weight.name}.scale", scale)
        z = _constant(graph, f"{weight.name}.zero_point", np.zeros_like(scale, dtype=np.int8))
        dequantize = ir.node("DequantizeLinear", [data, s, z], attributes={"axis": out_axis})
    dequantize.name = f"{node.name}.weight_dequantize"
    dequantize.outputs[0].name = f"{weight.name}.dequantized"
    dequantize.outputs[0].dtype, dequantize.outputs[0].shape = weight.dtype, weight.shape
    graph.insert_before(node, [dequantize])
    node.replace_input_with(1, dequantize.outputs[0])


def _quantized_table(graph: ir.Graph, node: ir.Node) -> None:
    """Gather rows of an int8 table and dequantize only the rows gathered (one scale per table).

    Dequantizing the whole table before the Gather would rebuild it in FP32 on every run.
    """
    table = node.inputs[0]
    w = array_of(table).astype(np.float32)
    scale = np.float32(max(float(np.abs(w).max()), 1e-8) / 127.0)
    quantized = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    node.replace_input_with(0, _constant(graph, f"{table.name}.int8", quantized))
    out = node.outputs[0]
    if out.is_graph_output():
        raise InvalidConfigError(f"{node.name} produces a graph output; leave it in fp32.")
    uses = list(out.uses())
    s = _constant(graph, f"{table.name}.scale", np.array(scale, np.float32))
    z = _constant(graph, f"{table.name}.zero_point", np.array(0, np.int8))
    dequantize = ir.node("DequantizeLinear", [out, s, z], name=f"{node.name}.dequantize")
    dequantize.outputs[0].name = f"{out.name}.dequantized"
    dequantize.outputs[0].dtype, dequantize.outputs[0].shape = out.dtype, out.shape
    out.type = ir.TensorType(ir.DataType.INT8)  # a new type: clones share the old one
    graph.insert_after(node, [dequantize])
    for use in uses:
        use.node.replace_input_with(use.idx, dequantize.outputs[0])


def _require_opset(model: ir.Model, version: int) -> None:
    if model.opset_imports.get("", 0) < version:
        model.opset_imports[""] = version
        model.graph.opset_imports[""] = version
