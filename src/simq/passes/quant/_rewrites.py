"""The graph rewrites behind `QuantizePass`, as rules (`RECIPES`): each checks a node and puts
its quantized form in its place.

Written in standard ONNX (plus ONNX Runtime's QAttention) in the forms the runtimes fuse: a
MatMul by DynamicQuantizeLinear + MatMulInteger + rescale (ORT's DynamicQuantizeMatMul), a fused
Attention by QAttention, a weight by its integer tensor read through DequantizeLinear (INT8 per
output channel, its activations static INT8 or FP32; INT4 in blocks), a static INT8 Gemm's bias
in int32, an embedding table in int8 with only the gathered rows dequantized.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import QuantizableNode
from simq.passes._edit import array_of, constant

__all__ = [
    "INT4_BLOCK", "INT4_OPSET", "INT4_TABLE_BLOCK", "MS_DOMAIN", "RECIPES", "Recipe", "forget_quantized", "recipe_for", "dequantized_weight", "dynamic_matmul", "quantized_attention", "quantized_bias", "quantized_table",
    "require_ms_opset", "require_opset",
]  # fmt: skip

#: Weights per INT4 block along the input axis (MatMulNBits-friendly).
INT4_BLOCK = 32
#: Values per INT4 block along an embedding table's row: an fp32 scale per 32 would add a quarter
#: to the table's bytes; per 128, 1/16 (minilm-tweets' word table at 32, 64 or 128: the same
#: accuracy on 1,500 validation tweets, 19.1, 18.4 and 18.0 MB for the whole INT8 model).
INT4_TABLE_BLOCK = 128
MS_DOMAIN = "com.microsoft"
#: DequantizeLinear with block_size and INT4 tensors arrived in opset 21.
INT4_OPSET = 21


def weight_axes(node: ir.Node, q: QuantizableNode) -> tuple[int, int]:
    """(output-channel axis, input axis) of a node's weight."""
    if q.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        return 0, 1
    if q.op_type == "Gemm" or q.op_type == "MatMul":
        return 1, 0
    return 0, 1  # Conv: (out, in, kh, kw)


_QUANTIZED = "simq.quantized."


def quantized_once(graph: ir.Graph, weight: ir.Value, scheme: Hashable, make: Callable[[], dict[str, ir.Value]]) -> dict[str, ir.Value]:
    """The constants `make` builds from `weight` in `scheme`, built once per graph: nodes that read
    one weight (ALBERT's shared layers, tied projections) read one quantized copy of it, as ORT's
    quantizers make it, not a copy each. The record lives in the weight's meta until
    `forget_quantized`, which `QuantizePass` calls however its rewrites end."""
    key = f"{_QUANTIZED}{scheme!r}"
    if key not in weight.meta:
        weight.meta[key] = make()
    return weight.meta[key]


def forget_quantized(graph: ir.Graph) -> None:
    """Drop `quantized_once`'s records: a clone copies meta, and would read this graph's constants."""
    for value in graph.initializers.values():
        for key in [k for k in value.meta if k.startswith(_QUANTIZED)]:
            del value.meta[key]


def int8_constants(graph: ir.Graph, name: str, data: np.ndarray, scale: np.ndarray) -> dict[str, ir.Value]:
    """A weight's int8 data, its scales and its all-zero zero point, as constants named after it."""
    return {
        "data": constant(graph, f"{name}.int8", data), "scale": constant(graph, f"{name}.scale", scale),
        "zero_point": constant(graph, f"{name}.zero_point", np.zeros_like(scale, dtype=np.int8)),
    }  # fmt: skip


def per_column_int8(w: np.ndarray, reduce_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scale per column) of an (in, out) weight, symmetric."""
    limit = 63 if reduce_range else 127
    scale = np.abs(w).max(axis=0) / limit
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return np.clip(np.round(w / scale), -limit, limit).astype(np.int8), scale


def replace(graph: ir.Graph, old: ir.Node, new_nodes: list[ir.Node]) -> None:
    """Put `new_nodes` (the last one producing `old`'s output) in place of `old`."""
    ir.convenience.replace_nodes_and_values(graph, old, [old], new_nodes, [old.outputs[0]], [new_nodes[-1].outputs[0]])


def dynamic_matmul(graph: ir.Graph, node: ir.Node, q: QuantizableNode, reduce_range: bool) -> None:
    """MatMul/Gemm by a weight -> activations quantized per call, an integer MatMul, rescaled.

    Written in standard ONNX (DynamicQuantizeLinear, MatMulInteger, Cast, Mul), the form ORT's
    ``quantize_dynamic`` emits: ONNX Runtime fuses it into its DynamicQuantizeMatMul kernel when
    it loads the model, and shape inference (the analysis, the cost model) still reads it.
    """
    weight = node.inputs[1]
    transposed, alpha, bias = False, 1.0, None
    if q.op_type == "Gemm":
        if node.attributes.get_int("transA", 0):
            raise InvalidConfigError(f"{node.name} is a Gemm with a transposed input; leave it out of int8dyn.")
        transposed, alpha = bool(node.attributes.get_int("transB", 0)), node.attributes.get_float("alpha", 1.0)
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is not None:
            outputs = weight.const_value.shape[0 if transposed else 1]
            if c.const_value is None or c.const_value.numpy().size != outputs:
                raise InvalidConfigError(f"{node.name} adds a bias that is not one value per output; leave it out of int8dyn.")
            bias = constant(graph, f"{c.name}.int8dyn", (array_of(c).reshape(-1) * node.attributes.get_float("beta", 1.0)).astype(np.float32))

    def make() -> dict[str, ir.Value]:
        w = array_of(weight).astype(np.float32)
        data, scale = per_column_int8((w.T if transposed else w) * alpha, reduce_range)
        return int8_constants(graph, weight.name, data, scale)

    quantized = quantized_once(graph, weight, ("int8dyn", transposed, alpha, reduce_range), make)
    quantize_input = ir.node("DynamicQuantizeLinear", [node.inputs[0]], name=f"{node.name}.quantize_input", num_outputs=3)
    x, x_scale, x_zero_point = quantize_input.outputs
    integer = ir.node("MatMulInteger", [x, quantized["data"], x_zero_point, quantized["zero_point"]], name=f"{node.name}.integer")
    as_float = ir.node("Cast", [integer.outputs[0]], {"to": ir.DataType.FLOAT}, name=f"{node.name}.cast")
    scales = ir.node("Mul", [x_scale, quantized["scale"]], name=f"{node.name}.scales")
    rescaled = ir.node("Mul", [as_float.outputs[0], scales.outputs[0]], name=node.name)
    new = [quantize_input, integer, as_float, scales, rescaled]
    if bias is not None:
        rescaled.name = f"{node.name}.rescale"
        new.append(ir.node("Add", [rescaled.outputs[0], bias], name=node.name))
    replace(graph, node, new)


def quantized_attention(graph: ir.Graph, node: ir.Node, reduce_range: bool) -> None:
    """A fused Attention -> DynamicQuantizeLinear + QAttention (ONNX Runtime's INT8 attention)."""
    weight = node.inputs[1]
    if weight.const_value is None:
        raise InvalidConfigError(f"{node.name} reads a computed weight; it cannot be quantized.")

    def make() -> dict[str, ir.Value]:
        data, scale = per_column_int8(array_of(weight).astype(np.float32), reduce_range)
        return int8_constants(graph, weight.name, data, scale)

    quantized = quantized_once(graph, weight, ("int8dyn", False, 1.0, reduce_range), make)
    quantize_input = ir.node("DynamicQuantizeLinear", [node.inputs[0]], name=f"{node.name}.quantize_input", num_outputs=3)
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    inputs = [
        quantize_input.outputs[0], quantized["data"], node.inputs[2], quantize_input.outputs[1], quantized["scale"], mask,
        quantize_input.outputs[2], quantized["zero_point"],
    ]  # fmt: skip
    attributes = {k: a for k, a in node.attributes.items() if k != "qkv_hidden_sizes"}
    new = ir.Node(MS_DOMAIN, "QAttention", inputs, attributes=list(attributes.values()), name=node.name)
    replace(graph, node, [quantize_input, new])


def dequantized_weight(graph: ir.Graph, node: ir.Node, q: QuantizableNode, *, int4: bool) -> None:
    """Replace the node's float weight by an integer one read through DequantizeLinear."""
    weight = node.inputs[1]
    out_axis, in_axis = weight_axes(node, q)

    def make() -> dict[str, ir.Value]:
        w = array_of(weight).astype(np.float32)
        if int4:
            shape = list(w.shape)
            shape[in_axis:in_axis + 1] = [w.shape[in_axis] // INT4_BLOCK, INT4_BLOCK]
            grouped = w.reshape(shape)
            scale = np.abs(grouped).max(axis=in_axis + 1) / 7.0
            scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
            data = np.clip(np.round(grouped / np.expand_dims(scale, in_axis + 1)), -8, 7).reshape(w.shape)
            return {"data": constant(graph, f"{weight.name}.int4", data.astype(ml_dtypes.int4), ir.DataType.INT4), "scale": constant(graph, f"{weight.name}.scale", scale)}
        reduce = tuple(i for i in range(w.ndim) if i != out_axis)
        scale = np.abs(w).max(axis=reduce) / 127.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        data = np.clip(np.round(w / np.expand_dims(scale, reduce)), -127, 127).astype(np.int8)
        return int8_constants(graph, weight.name, data, scale)

    quantized = quantized_once(graph, weight, ("int4w" if int4 else "int8", out_axis, in_axis), make)
    if int4:
        dequantize = ir.node("DequantizeLinear", [quantized["data"], quantized["scale"]], attributes={"axis": in_axis, "block_size": INT4_BLOCK})
    else:
        dequantize = ir.node("DequantizeLinear", [quantized["data"], quantized["scale"], quantized["zero_point"]], attributes={"axis": out_axis})
    dequantize.name = f"{node.name}.weight_dequantize"
    dequantize.outputs[0].name = f"{node.name}.weight_dequantized"  # one per reader: a shared weight has several
    dequantize.outputs[0].dtype, dequantize.outputs[0].shape = weight.dtype, weight.shape
    graph.insert_before(node, [dequantize])
    node.replace_input_with(1, dequantize.outputs[0])


def quantized_bias(graph: ir.Graph, node: ir.Node) -> None:
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
    data = constant(graph, f"{bias.name}.int32", np.round(b / scale).astype(np.int32))
    dequantize = ir.node(
        "DequantizeLinear", [data, constant(graph, f"{bias.name}.scale", scale), constant(graph, f"{bias.name}.zero_point", np.zeros(b.shape, np.int32))],
        attributes={"axis": 0}, name=f"{node.name}.bias_dequantize",
    )  # fmt: skip
    dequantize.outputs[0].name = f"{node.name}.bias_dequantized"  # a bias shared by several nodes has one per reader
    dequantize.outputs[0].dtype, dequantize.outputs[0].shape = bias.dtype, ir.Shape(list(b.shape))
    graph.insert_before(node, [dequantize])
    node.replace_input_with(2, dequantize.outputs[0])


def quantized_table(graph: ir.Graph, node: ir.Node) -> None:
    """Gather rows of an int8 table and dequantize only the rows gathered (one scale per table).

    Dequantizing the whole table before the Gather would rebuild it in FP32 on every run. One
    scale per column comes back closer to the table (MiniLM's word table: 1.1 % of its norm
    instead of 4.3 %) but did not move accuracy (+0.2 ± 0.6 points, docs/TABLES.md) and ONNX
    Runtime's per-axis DequantizeLinear ran the unpruned minilm 3 % slower.
    """
    table = node.inputs[0]
    w = array_of(table).astype(np.float32)
    scale = np.float32(max(float(np.abs(w).max()), 1e-8) / 127.0)
    quantized = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    node.replace_input_with(0, constant(graph, f"{table.name}.int8", quantized))
    out = node.outputs[0]
    if out.is_graph_output():
        raise InvalidConfigError(f"{node.name} produces a graph output; leave it in fp32.")
    uses = list(out.uses())
    s = constant(graph, f"{table.name}.scale", np.array(scale, np.float32))
    z = constant(graph, f"{table.name}.zero_point", np.array(0, np.int8))
    dequantize = ir.node("DequantizeLinear", [out, s, z], name=f"{node.name}.dequantize")
    dequantize.outputs[0].name = f"{out.name}.dequantized"
    dequantize.outputs[0].dtype, dequantize.outputs[0].shape = out.dtype, out.shape
    out.type = ir.TensorType(ir.DataType.INT8)  # a new type: clones share the old one
    graph.insert_after(node, [dequantize])
    for use in uses:
        use.node.replace_input_with(use.idx, dequantize.outputs[0])


def int4_table(graph: ir.Graph, node: ir.Node) -> None:
    """Gather rows of an int4 table and dequantize only the rows gathered: ONNX Runtime's
    GatherBlockQuantized, symmetric, one scale per `INT4_TABLE_BLOCK` values of a row, two values a byte
    (low nibble first, stored with the implicit zero point 8). Half the bytes of the int8 table."""
    table, indices = node.inputs[0], node.inputs[1]
    w = array_of(table).astype(np.float32)
    rows, width = w.shape
    grouped = w.reshape(rows, width // INT4_TABLE_BLOCK, INT4_TABLE_BLOCK)
    scale = np.abs(grouped).max(axis=-1) / 7.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    unsigned = (np.clip(np.round(grouped / scale[..., None]), -8, 7) + 8).astype(np.uint8).reshape(rows, width)
    packed = unsigned[:, 0::2] | (unsigned[:, 1::2] << 4)
    gather = ir.node(
        "GatherBlockQuantized", [constant(graph, f"{table.name}.int4", packed), indices, constant(graph, f"{table.name}.scale", scale)],
        attributes={"gather_axis": 0, "quantize_axis": 1, "block_size": INT4_TABLE_BLOCK, "bits": 4}, domain=MS_DOMAIN, name=node.name,
    )  # fmt: skip
    gather.outputs[0].dtype, gather.outputs[0].shape = node.outputs[0].dtype, node.outputs[0].shape
    replace(graph, node, [gather])


def _int4_table(model: ir.Model, node: ir.Node, q: QuantizableNode | None, reduce_range: bool) -> None:
    int4_table(model.graph, node)
    require_ms_opset(model)


def require_opset(model: ir.Model, version: int) -> None:
    if model.opset_imports.get("", 0) < version:
        model.opset_imports[""] = version
        model.graph.opset_imports[""] = version


def require_ms_opset(model: ir.Model) -> None:
    model.opset_imports.setdefault(MS_DOMAIN, 1)
    model.graph.opset_imports.setdefault(MS_DOMAIN, 1)


@dataclass(frozen=True)
class Recipe:
    """One way to quantize a node, as a rule (the form of onnxscript's rewrite rules).

    Attributes:
        name: What it makes, for messages.
        check: Whether it takes ``(node, what the analysis knows of it, precision)``; the
            analysis is None for a fused attention, which it never saw.
        rewrite: ``(model, node, analysis, reduce_range)``: the quantized form in the node's place,
            with the opsets it needs imported.
        static: The node's activations go through `QuantizePass`'s static-INT8 plan (QDQ on the
            values it reads, chained through integer-capable readers) before `rewrite` runs.
    """

    name: str
    check: Callable[[ir.Node, QuantizableNode | None, str], bool]
    rewrite: Callable[[ir.Model, ir.Node, QuantizableNode | None, bool], None]
    static: bool = False


def _attention(model: ir.Model, node: ir.Node, q: QuantizableNode | None, reduce_range: bool) -> None:
    quantized_attention(model.graph, node, reduce_range)
    require_ms_opset(model)


def _dynamic(model: ir.Model, node: ir.Node, q: QuantizableNode | None, reduce_range: bool) -> None:
    dynamic_matmul(model.graph, node, q, reduce_range)
    require_ms_opset(model)


def _int4(model: ir.Model, node: ir.Node, q: QuantizableNode | None, reduce_range: bool) -> None:
    dequantized_weight(model.graph, node, q, int4=True)
    require_opset(model, INT4_OPSET)


def _int8_weights(model: ir.Model, node: ir.Node, q: QuantizableNode | None, reduce_range: bool) -> None:
    dequantized_weight(model.graph, node, q, int4=False)


def _static_int8(model: ir.Model, node: ir.Node, q: QuantizableNode | None, reduce_range: bool) -> None:
    if q.kind == "weighted":
        dequantized_weight(model.graph, node, q, int4=False)
        if q.op_type == "Gemm":
            quantized_bias(model.graph, node)


#: The recipes `QuantizePass` applies, the first whose check passes. A new recipe is its rewrite
#: and one entry here (before the entries it must win over).
RECIPES: tuple[Recipe, ...] = (
    Recipe("QAttention", lambda node, q, precision: q is None, _attention),
    Recipe("int4 embedding table", lambda node, q, precision: q.op_type == "Gather" and precision == "int4w", _int4_table),
    Recipe("int8 embedding table", lambda node, q, precision: q.op_type == "Gather", lambda model, node, q, r: quantized_table(model.graph, node)),
    Recipe("dynamic INT8 MatMul", lambda node, q, precision: precision == "int8dyn", _dynamic),
    Recipe("INT4 weights", lambda node, q, precision: precision == "int4w", _int4),
    Recipe("INT8 weights", lambda node, q, precision: precision == "int8w", _int8_weights),
    Recipe("static INT8 (QDQ)", lambda node, q, precision: precision == "int8", _static_int8, static=True),
)


def recipe_for(node: ir.Node, q: QuantizableNode | None, precision: str) -> Recipe:
    """The first of `RECIPES` that takes the node at `precision`.

    Raises:
        InvalidConfigError: None does.
    """
    recipe = next((r for r in RECIPES if r.check(node, q, precision)), None)
    if recipe is None:
        raise InvalidConfigError(f"no quantization recipe turns {node.op_type} {node.name} into {precision}.")
    return recipe
