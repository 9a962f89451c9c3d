"""QuantizePass: run each quantization unit in FP32, static INT8, dynamic INT8 or INT4 weights."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence

import ml_dtypes
import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import META_KEPT, QuantizableNode, Structure
from simq.passes._edit import array_of
from simq.passes._knobs import Knob, check_config, quant_knob
from simq.passes.quant._calibration import Calibration
from simq.passes.quant._regions import SAME_RANGE, static_int8_plan
from simq.passes.quant._units import ATTENTION, QuantUnit, bind, quant_units, takes_int8dyn

__all__ = ["FALLBACK", "INT4_BLOCK", "NOTES_METADATA", "PRECISIONS", "QuantizePass", "nearest", "quant_knob"]

#: Every precision a unit can take, from the least to the most compressed.
PRECISIONS = ("fp32", "int8dyn", "int8", "int4w")
#: A whole-model policy's precision, then what a unit that lacks it takes instead, in order.
FALLBACK: Mapping[str, tuple[str, ...]] = {
    "fp32": ("fp32",),
    "int8dyn": ("int8dyn", "int8", "fp32"),
    "int8": ("int8", "int8dyn", "fp32"),
    "int4w": ("int4w", "int8dyn", "int8", "fp32"),
}
#: Weights per INT4 block along the input axis (MatMulNBits-friendly).
INT4_BLOCK = 32
#: ``metadata_props`` key listing units that could not take their precision in this candidate.
NOTES_METADATA = "simq.quantization_notes"
# DequantizeLinear with block_size and INT4 tensors arrived in opset 21.
_INT4_OPSET = 21
_MS_DOMAIN = "com.microsoft"

Supports = Callable[[str, str], bool]


def nearest(domain: Sequence[Hashable], precision: str) -> str:
    """What a unit with `domain` runs under a whole-model `precision` policy (see `FALLBACK`)."""
    return next((p for p in FALLBACK[precision] if p in domain), str(domain[0]))


def _domain(unit: QuantUnit, supports: Supports | None) -> tuple[str, ...]:
    if unit.op_type == ATTENTION:
        options = ["fp32", "int8dyn"]
    else:
        q = unit.nodes[0]
        linear = q.kind == "weighted" and q.op_type in ("MatMul", "Gemm")
        options = ["fp32", *(["int8dyn"] if linear else []), "int8"]
        if linear and q.in_features and q.in_features % INT4_BLOCK == 0:
            options.append("int4w")
    return tuple(p for p in options if p == "fp32" or supports is None or supports(unit.op_type, p))


class QuantizePass(ir.passes.InPlacePass):
    """Quantizes every unit its policy (``quant.<unit>`` knobs) does not leave in ``fp32``.

    ``int8``: static QDQ, the form ONNX Runtime and OpenVINO fuse into integer kernels. Each
    activation entering an INT8 node goes through QuantizeLinear/DequantizeLinear (uint8,
    asymmetric, per tensor, range from `calibration`), and so does each activation leaving one
    when all its readers are INT8 too, so that chains of Conv, residual Add and pooling run as
    integer kernels (`static_int8_plan`); weights are int8 with one symmetric scale per output
    channel, read through DequantizeLinear. ``int8dyn``: weights int8 per output channel,
    activations quantized at run time: a MatMul/Gemm becomes DynamicQuantizeLinear + MatMulInteger
    (ONNX Runtime's DynamicQuantizeMatMul once loaded), a fused Attention DynamicQuantizeLinear +
    QAttention. ``int4w``:
    weight-only, int4 in blocks of `INT4_BLOCK` along the input axis, read through a blocked
    DequantizeLinear (opset 21); activations stay FP32 (ONNX Runtime fuses this into
    MatMulNBits). An embedding Gather in ``int8`` reads an int8 table and dequantizes the
    gathered rows.

    Units are named on the FP32 model's analysis and found again in the model given (`bind`),
    which may be pruned and fused. A unit that cannot take its precision in this model (an
    attention the target did not fuse into an INT8-capable kernel here) stays FP32 and is
    listed in ``metadata_props[NOTES_METADATA]``.

    Changes: inserts Q/DQ or dynamic-quantization nodes and replaces float weights by integer
    ones; the default opset becomes 21 when an INT4 weight is added.

    Args:
        structure: The analysis of the FP32 model.
        policy: Knob values ``quant.<unit> -> precision``; units left out stay FP32.
        calibration: Activation ranges of the model this pass runs on, by value name; a range
            narrowed by pruning is taken over the channels kept (``value.meta[META_KEPT]``).
        supports: The target's ``supports(op_type, precision)``; other precisions are errors.
        fused: Layers whose attention the target fuses, and whether that kernel takes int8dyn
            (see `quant_units`).
        reduce_range: int8dyn weights in 7 bits, for CPUs whose INT8 dot product can saturate
            on full-range weights (AVX2 without VNNI sums u8 x s8 pairs into int16).
    """

    def __init__(
        self,
        structure: Structure,
        policy: Mapping[str, Hashable],
        calibration: Calibration,
        supports: Supports | None = None,
        *,
        fused: Mapping[int, bool] | None = None,
        reduce_range: bool = False,
    ) -> None:
        super().__init__()
        self.structure, self.calibration, self.supports = structure, calibration, supports
        self.units = quant_units(structure, fused)
        self.reduce_range = reduce_range
        self.policy = check_config(policy, self.knobs(structure, supports, fused))

    @staticmethod
    def knobs(structure: Structure, supports: Supports | None = None, fused: Mapping[int, bool] | None = None) -> list[Knob]:
        """One knob per quantization unit; the domain is what the unit and the target allow."""
        knobs = []
        for unit in quant_units(structure, fused):
            domain = _domain(unit, supports)
            if len(domain) > 1:
                what = f"attention of layer {unit.layer}" if unit.op_type == ATTENTION else f"{unit.op_type} {unit.name}"
                knobs.append(Knob(quant_knob(unit.name), domain, "fp32", f"precision of {what}"))
        return knobs

    def _assignments(self, model: ir.Model) -> tuple[list[tuple[ir.Node, QuantizableNode | None, str]], list[str]]:
        """(node, what the analysis knows of it, precision) for every node to quantize, and notes."""
        bound = bind(self.units, model)
        out, notes = [], []
        for unit in self.units:
            precision = self.policy.get(quant_knob(unit.name), "fp32")
            if precision == "fp32":
                continue
            for node, q in bound[unit.name]:
                if q is None and not takes_int8dyn(node):
                    notes.append(f"{unit.name}: the fused attention here does not take {precision}; left fp32")
                    continue
                out.append((node, q, precision))
        return out, notes

    def activations(self, model: ir.Model) -> list[str]:
        """Names of the activations whose ranges this pass reads on `model` (for calibrating it)."""
        assignments, _ = self._assignments(model)
        int8 = {node: q for node, q, p in assignments if p == "int8" and q is not None and q.op_type != "Gather"}
        return [value.name for value in static_int8_plan(model.graph, int8)]

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        assignments, notes = self._assignments(model)
        int8: dict[ir.Node, QuantizableNode] = {}
        for node, q, precision in assignments:
            if q is None:
                _quantized_attention(graph, node, self.reduce_range)
                _require_ms_opset(model)
            elif q.op_type == "Gather":
                _quantized_table(graph, node)
            elif precision == "int8":
                int8[node] = q
            elif precision == "int8dyn":
                _dynamic_matmul(graph, node, q, self.reduce_range)
                _require_ms_opset(model)
            else:
                _dequantized_weight(graph, node, q, int4=True)
                _require_opset(model, _INT4_OPSET)
        for value, readers in static_int8_plan(graph, int8).items():
            dequantized = self._qdq(graph, value, readers[0][0])
            for reader, index in readers:
                reader.replace_input_with(index, dequantized)
        for node, q in int8.items():
            if q.kind == "weighted":
                _dequantized_weight(graph, node, q, int4=False)
                if q.op_type == "Gemm":
                    _quantized_bias(graph, node)
        if notes:
            model.metadata_props[NOTES_METADATA] = json.dumps(notes)
        return ir.passes.PassResult(model, bool(assignments))

    def _qdq(self, graph: ir.Graph, value: ir.Value, reader: ir.Node) -> ir.Value:
        source = value  # a MaxPool's output is quantized like its input, so ORT runs it on integers
        while source.producer() is not None and source.producer().op_type in SAME_RANGE:
            source = source.producer().inputs[0]
        if source.name not in self.calibration.ranges:
            raise InvalidConfigError(f"no calibration range for {source.name}; calibrate this model before quantizing {reader.name}.")
        low, high = self.calibration.ranges[source.name].bounds(source.meta.get(META_KEPT))
        scale = np.float32(max(high - low, 1e-8) / 255.0)
        zero_point = np.uint8(np.clip(np.round(-low / scale), 0, 255))
        s = _constant(graph, f"{value.name}.scale", np.array(scale, np.float32))
        z = _constant(graph, f"{value.name}.zero_point", np.array(zero_point, np.uint8))
        quantize = ir.node("QuantizeLinear", [value, s, z], name=f"{value.name}.quantize")
        dequantize = ir.node("DequantizeLinear", [quantize.outputs[0], s, z], name=f"{value.name}.dequantize")
        quantize.outputs[0].name, dequantize.outputs[0].name = f"{value.name}.q", f"{value.name}.dq"
        dequantize.outputs[0].dtype, dequantize.outputs[0].shape = value.dtype, value.shape
        producer = value.producer()
        if producer is not None:
            graph.insert_after(producer, [quantize, dequantize])
        else:  # a graph input: quantize it right before its first INT8 reader
            graph.insert_before(reader, [quantize, dequantize])
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


def _per_column_int8(w: np.ndarray, reduce_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scale per column) of an (in, out) weight, symmetric."""
    limit = 63 if reduce_range else 127
    scale = np.abs(w).max(axis=0) / limit
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return np.clip(np.round(w / scale), -limit, limit).astype(np.int8), scale


def _replace(graph: ir.Graph, old: ir.Node, new_nodes: list[ir.Node]) -> None:
    """Put `new_nodes` (the last one producing `old`'s output) in place of `old`."""
    ir.convenience.replace_nodes_and_values(graph, old, [old], new_nodes, [old.outputs[0]], [new_nodes[-1].outputs[0]])


def _dynamic_matmul(graph: ir.Graph, node: ir.Node, q: QuantizableNode, reduce_range: bool) -> None:
    """MatMul/Gemm by a weight -> activations quantized per call, an integer MatMul, rescaled.

    Written in standard ONNX (DynamicQuantizeLinear, MatMulInteger, Cast, Mul), the form ORT's
    ``quantize_dynamic`` emits: ONNX Runtime fuses it into its DynamicQuantizeMatMul kernel when
    it loads the model, and shape inference (the analysis, the cost model) still reads it.
    """
    w = array_of(node.inputs[1]).astype(np.float32)
    bias = None
    if q.op_type == "Gemm":
        if node.attributes.get_int("transA", 0):
            raise InvalidConfigError(f"{node.name} is a Gemm with a transposed input; leave it out of int8dyn.")
        w = (w.T if node.attributes.get_int("transB", 0) else w) * node.attributes.get_float("alpha", 1.0)
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is not None:
            if c.const_value is None or c.const_value.numpy().size != w.shape[1]:
                raise InvalidConfigError(f"{node.name} adds a bias that is not one value per output; leave it out of int8dyn.")
            bias = _constant(graph, f"{c.name}.int8dyn", (array_of(c).reshape(-1) * node.attributes.get_float("beta", 1.0)).astype(np.float32))
    data, scale = _per_column_int8(w, reduce_range)
    name = node.inputs[1].name
    quantize_input = ir.node("DynamicQuantizeLinear", [node.inputs[0]], name=f"{node.name}.quantize_input", num_outputs=3)
    x, x_scale, x_zero_point = quantize_input.outputs
    integer = ir.node(
        "MatMulInteger",
        [x, _constant(graph, f"{name}.int8", data), x_zero_point, _constant(graph, f"{name}.zero_point", np.zeros_like(scale, dtype=np.int8))],
        name=f"{node.name}.integer",
    )  # fmt: skip
    as_float = ir.node("Cast", [integer.outputs[0]], {"to": ir.DataType.FLOAT}, name=f"{node.name}.cast")
    scales = ir.node("Mul", [x_scale, _constant(graph, f"{name}.scale", scale)], name=f"{node.name}.scales")
    rescaled = ir.node("Mul", [as_float.outputs[0], scales.outputs[0]], name=node.name)
    new = [quantize_input, integer, as_float, scales, rescaled]
    if bias is not None:
        rescaled.name = f"{node.name}.rescale"
        new.append(ir.node("Add", [rescaled.outputs[0], bias], name=node.name))
    _replace(graph, node, new)


def _quantized_attention(graph: ir.Graph, node: ir.Node, reduce_range: bool) -> None:
    """A fused Attention -> DynamicQuantizeLinear + QAttention (ONNX Runtime's INT8 attention)."""
    weight = node.inputs[1]
    if weight.const_value is None:
        raise InvalidConfigError(f"{node.name} reads a computed weight; it cannot be quantized.")
    data, scale = _per_column_int8(array_of(weight).astype(np.float32), reduce_range)
    quantize_input = ir.node("DynamicQuantizeLinear", [node.inputs[0]], name=f"{node.name}.quantize_input", num_outputs=3)
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    inputs = [
        quantize_input.outputs[0],
        _constant(graph, f"{weight.name}.int8", data),
        node.inputs[2],
        quantize_input.outputs[1],
        _constant(graph, f"{weight.name}.scale", scale),
        mask,
        quantize_input.outputs[2],
        _constant(graph, f"{weight.name}.zero_point", np.zeros_like(scale, dtype=np.int8)),
    ]
    attributes = {k: a for k, a in node.attributes.items() if k != "qkv_hidden_sizes"}
    new = ir.Node(_MS_DOMAIN, "QAttention", inputs, attributes=list(attributes.values()), name=node.name)
    _replace(graph, node, [quantize_input, new])


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


def _quantized_bias(graph: ir.Graph, node: ir.Node) -> None:
    """A static INT8 Gemm's bias as int32 at the input scale x weight scale, read through
    DequantizeLinear: the form ONNX Runtime fuses into its integer QGemm kernel."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    x, w = (node.inputs[i].producer() for i in (0, 1))
    if bias is None or bias.const_value is None or x is None or w is None or x.op_type != "DequantizeLinear" or node.attributes.get_float("beta", 1.0) != 1.0:
        return
    scale = (array_of(x.inputs[1]).astype(np.float32) * array_of(w.inputs[1]).astype(np.float32) * node.attributes.get_float("alpha", 1.0)).reshape(-1)
    b = array_of(bias).astype(np.float32).reshape(-1)
    if scale.size not in (1, b.size):
        return
    scale = np.broadcast_to(scale, b.shape).astype(np.float32)
    data = _constant(graph, f"{bias.name}.int32", np.round(b / scale).astype(np.int32))
    dequantize = ir.node(
        "DequantizeLinear", [data, _constant(graph, f"{bias.name}.scale", scale), _constant(graph, f"{bias.name}.zero_point", np.zeros(b.shape, np.int32))],
        attributes={"axis": 0}, name=f"{node.name}.bias_dequantize",
    )  # fmt: skip
    dequantize.outputs[0].name = f"{bias.name}.dequantized"
    dequantize.outputs[0].dtype, dequantize.outputs[0].shape = bias.dtype, ir.Shape(list(b.shape))
    graph.insert_before(node, [dequantize])
    node.replace_input_with(2, dequantize.outputs[0])


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


def _require_ms_opset(model: ir.Model) -> None:
    model.opset_imports.setdefault(_MS_DOMAIN, 1)
    model.graph.opset_imports.setdefault(_MS_DOMAIN, 1)
