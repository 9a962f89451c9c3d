"""QuantizePass: run each quantization unit in FP32, INT8 weights, static INT8, dynamic INT8 or INT4 weights."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import META_KEPT, QuantizableNode, RemovableBlock, Structure
from simq.passes._contracts import require_unquantized
from simq.passes._knobs import Knob, check_config, quant_knob
from simq.passes.quant._calibration import Calibration
from simq.passes.quant._regions import SAME_RANGE, static_int8_plan
from simq.passes._edit import constant
from simq.passes.quant._rewrites import INT4_BLOCK, INT4_OPSET, INT4_TABLE_BLOCK, MS_DOMAIN, Recipe, forget_quantized, recipe_for
from simq.passes.quant._units import ATTENTION, QuantUnit, attention_unit_name, bind, quant_units, takes_int8dyn

__all__ = ["FALLBACK", "INT4_BLOCK", "NOTES_METADATA", "PRECISIONS", "QuantizePass", "nearest", "quant_knob"]

#: Every precision a unit can take, from the least to the most compressed.
PRECISIONS = ("fp32", "int8w", "int8dyn", "int8", "int4w")
#: A whole-model policy's precision, then what a unit that lacks it takes instead, in order.
FALLBACK: Mapping[str, tuple[str, ...]] = {
    "fp32": ("fp32",),
    "int8w": ("int8w", "fp32"),
    "int8dyn": ("int8dyn", "int8", "fp32"),
    "int8": ("int8", "int8dyn", "fp32"),
    "int4w": ("int4w", "int8w", "int8dyn", "int8", "fp32"),
}
#: ``metadata_props`` key listing units that could not take their precision in this candidate.
NOTES_METADATA = "simq.quantization_notes"

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
        # int8w only where a target lists it (the filter below): a runtime without a decompressing
        # kernel would dequantize the weight on every call. A table is weight-only by nature
        # (int8w reads the same int8 table as int8).
        weights_only = supports is not None and (linear or q.op_type == "Gather")
        options = ["fp32", *(["int8w"] if weights_only else []), *(["int8dyn"] if linear else []), "int8"]
        if q.in_features and q.in_features % (INT4_BLOCK if linear else INT4_TABLE_BLOCK) == 0:
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
    QAttention. ``int8w``: weight-only, the weight int8 per output channel read through
    DequantizeLinear, activations FP32 (OpenVINO decompresses it inside its float MatMul: the
    bytes of INT8 at the speed of FP32, where its INT8 kernels do not pay). ``int4w``:
    weight-only, int4 in blocks of `INT4_BLOCK` along the input axis, read through a blocked
    DequantizeLinear (opset 21); activations stay FP32 (ONNX Runtime fuses this into
    MatMulNBits). An embedding Gather in ``int8`` reads an int8 table and dequantizes the
    gathered rows; in ``int4w``, an int4 table in blocks of `INT4_TABLE_BLOCK` along each row (ONNX
    Runtime's GatherBlockQuantized; only targets that list it offer it).

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
        signed_operands: An activation read by a static-INT8 MatMul of two activations is
            quantized symmetric int8 (zero point 0) where its range holds negative values, not
            uint8 with a zero point: OpenVINO's CPU plugin runs such a MatMul in integers only
            then (its second operand must be signed int8), as NNCF's transformer preset writes it.
        recalibrate: Ranges for the model the pass receives, given the activations it reads
            there (`activations`): for a model that pruning or fusion changed after
            `calibration` was measured. None: `calibration` as given.
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
        signed_operands: bool = False,
        recalibrate: Callable[[ir.Model, list[str]], Calibration] | None = None,
    ) -> None:
        super().__init__()
        self.structure, self.calibration, self.supports = structure, calibration, supports
        self.recalibrate = recalibrate
        self.units = quant_units(structure, fused)
        self.reduce_range, self.signed_operands = reduce_range, signed_operands
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

    @staticmethod
    def within(structure: Structure, block: RemovableBlock) -> list[str]:
        """The precisions of the block's units: moot once it is dropped."""
        names = [quant_knob(n) for n in block.nodes]
        return names + ([quant_knob(attention_unit_name(block.layer))] if block.layer is not None else [])

    def _assignments(self, model: ir.Model) -> tuple[list[tuple[ir.Node, QuantizableNode | None, Recipe]], list[str]]:
        """(node, what the analysis knows of it, its recipe) for every node to quantize, and notes."""
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
                out.append((node, q, recipe_for(node, q, str(precision))))
        return out, notes

    def activations(self, model: ir.Model) -> list[str]:
        """Names of the activations whose ranges this pass reads on `model` (for calibrating it)."""
        assignments, _ = self._assignments(model)
        return [value.name for value in static_int8_plan(model.graph, {node: q for node, q, r in assignments if r.static})]

    def requires(self, model: ir.Model) -> None:
        """Float: quantization runs once, after pruning and the target's fusions."""
        require_unquantized(model, "QuantizePass")

    def ensures(self, model: ir.Model) -> None:
        """The opsets its nodes need are imported (ONNX Runtime refuses the model otherwise)."""
        if any(n.domain == MS_DOMAIN for n in model.graph) and MS_DOMAIN not in model.opset_imports:
            raise ir.passes.PostconditionError(f"QuantizePass added {MS_DOMAIN} ops without importing the domain.")
        blocked = any(n.op_type == "DequantizeLinear" and "block_size" in n.attributes for n in model.graph)
        if blocked and model.opset_imports.get("", 0) < INT4_OPSET:
            raise ir.passes.PostconditionError(f"QuantizePass added blocked INT4 weights under opset {model.opset_imports.get('', 0)} (needs {INT4_OPSET}).")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Each node's recipe (`RECIPES`); static-INT8 nodes after their activations' QDQ."""
        graph = model.graph
        if self.recalibrate is not None:
            self.calibration = self.recalibrate(model, self.activations(model))
        assignments, notes = self._assignments(model)
        try:
            self._rewrite(model, assignments)
        finally:
            forget_quantized(graph)
        if notes:
            model.metadata_props[NOTES_METADATA] = json.dumps(notes)
        return ir.passes.PassResult(model, bool(assignments))

    def _rewrite(self, model: ir.Model, assignments: list[tuple[ir.Node, QuantizableNode | None, Recipe]]) -> None:
        graph = model.graph
        for node, q, recipe in assignments:
            if not recipe.static:
                recipe.rewrite(model, node, q, self.reduce_range)
        static = {node: q for node, q, recipe in assignments if recipe.static}
        for value, readers in static_int8_plan(graph, static).items():
            signed = self.signed_operands and any(r in static and static[r].kind == "dynamic" for r, _ in readers)
            dequantized = self._qdq(graph, value, readers[0][0], signed)
            for reader, index in readers:
                reader.replace_input_with(index, dequantized)
        for node, q, recipe in assignments:
            if recipe.static:
                recipe.rewrite(model, node, q, self.reduce_range)

    def _qdq(self, graph: ir.Graph, value: ir.Value, reader: ir.Node, signed: bool = False) -> ir.Value:
        """Quantize `value` for its INT8 readers: uint8 over its calibrated range, or symmetric
        int8 when `signed` and the range holds negative values."""
        source = value  # a MaxPool's output is quantized like its input, so ORT runs it on integers
        while source.producer() is not None and source.producer().op_type in SAME_RANGE:
            source = source.producer().inputs[0]
        if source.name not in self.calibration.ranges:
            raise InvalidConfigError(f"no calibration range for {source.name}; calibrate this model before quantizing {reader.name}.")
        low, high = self.calibration.ranges[source.name].bounds(source.meta.get(META_KEPT))
        if signed and low < 0:
            scale = np.float32(max(abs(low), abs(high), 1e-8) / 127.0)
            zero_point = np.array(0, np.int8)
        else:
            scale = np.float32(max(high - low, 1e-8) / 255.0)
            zero_point = np.array(np.clip(np.round(-low / scale), 0, 255), np.uint8)
        s = constant(graph, f"{value.name}.scale", np.array(scale, np.float32))
        z = constant(graph, f"{value.name}.zero_point", zero_point)
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
