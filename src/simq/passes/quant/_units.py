"""Quantization units: what one ``quant.<unit>`` knob sets, and finding it again in a lowered model.

A unit is one quantizable node of the FP32 model, or, where the target fuses a layer's attention
into one kernel, that whole attention (Q, K and V projections and the two attention MatMuls).
Units are named on the FP32 model's analysis, so one config means the same thing for every
candidate; `bind` finds what a unit became after pruning and fusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx_ir as ir

from simq.ir import QuantizableNode, Structure

__all__ = ["ATTENTION", "QuantUnit", "attention_unit_name", "bind", "fused_attention", "quant_units", "takes_int8dyn"]

#: The op type of a fused-attention unit.
ATTENTION = "Attention"
_MS_DOMAIN = "com.microsoft"
_WEIGHT_INPUT = {"Gather": 0}  # other weighted ops read their weight at input 1


@dataclass(frozen=True)
class QuantUnit:
    """What one quantization knob controls.

    Attributes:
        name: The knob's suffix: the node's name, or ``attention.<layer>`` for a fused attention.
        op_type: The node's op type, or `ATTENTION`.
        nodes: The FP32 model's quantizable nodes it covers (one; for an attention: Q, K, V).
        layer: The transformer layer of an attention unit, else None.
        out: An attention unit's output projection node (the fused kernel feeds it).
    """

    name: str
    op_type: str
    nodes: tuple[QuantizableNode, ...]
    layer: int | None = None
    out: str | None = None

    @property
    def in_features(self) -> int | None:
        return self.nodes[0].in_features if len(self.nodes) == 1 else None

    @property
    def kind(self) -> str:
        return self.nodes[0].kind if len(self.nodes) == 1 else "fused"


def attention_unit_name(layer: int) -> str:
    return f"attention.{layer}"


def quant_units(structure: Structure, fused: Mapping[int, bool] | None = None) -> list[QuantUnit]:
    """The units of `structure` when the target fuses the attention of the layers in `fused`.

    Args:
        fused: Layer index -> whether the fused attention kernel takes INT8 (``int8dyn``). A
            fused layer's Q/K/V projections and attention MatMuls are no longer units of their
            own: they are the attention unit (or, if the kernel stays float, nothing).
    """
    fused = dict(fused or {})
    by_node = {q.node: q for q in structure.quantizable}
    absorbed: set[str] = set()
    attention: dict[str, QuantUnit] = {}  # keyed by the Q projection, where the unit is listed
    for layer in structure.layers:
        if layer.index not in fused:
            continue
        a = layer.attention
        absorbed |= {a.q.node, a.k.node, a.v.node, a.scores, a.weighted}
        if fused[layer.index]:
            nodes = tuple(by_node[p.node] for p in a.projections if p.node in by_node)
            attention[a.q.node] = QuantUnit(attention_unit_name(layer.index), ATTENTION, nodes, layer.index, a.out.node)
    units = []
    for q in structure.quantizable:
        if q.node in attention:
            units.append(attention[q.node])
        elif q.node not in absorbed:
            units.append(QuantUnit(q.node, q.op_type, (q,)))
    return units


def _index(model: ir.Model) -> dict[str, ir.Node]:
    return {node.name: node for node in model.graph}


def _bind_node(q: QuantizableNode, model: ir.Model, nodes: Mapping[str, ir.Node]) -> ir.Node | None:
    """The node `q` became: itself, or (renamed by a rewrite) the one reading its weight."""
    node = nodes.get(q.node)
    if node is not None and node.op_type == q.op_type:
        return node
    weight = model.graph.initializers.get(q.weight) if q.weight else None
    if weight is None:
        return None
    readers = [u.node for u in weight.uses() if u.node.op_type == q.op_type and u.idx == _WEIGHT_INPUT.get(q.op_type, 1)]
    return readers[0] if len(readers) == 1 else None


def _fused_attention_node(out_projection: ir.Node | None) -> ir.Node | None:
    """The fused attention kernel feeding an output projection, if there is one."""
    if out_projection is None:
        return None
    producer = out_projection.inputs[0].producer()
    if producer is not None and producer.domain == _MS_DOMAIN and producer.op_type == ATTENTION:
        return producer
    return None


def fused_attention(model: ir.Model, structure: Structure) -> dict[int, ir.Node]:
    """Layer index -> the fused attention kernel of that layer in `model` (a lowered copy of the
    model `structure` analysed), for the layers whose attention was fused."""
    nodes = _index(model)
    by_node = {q.node: q for q in structure.quantizable}
    found = {}
    for layer in structure.layers:
        out = by_node.get(layer.attention.out.node)
        node = _fused_attention_node(_bind_node(out, model, nodes)) if out is not None else None
        if node is not None:
            found[layer.index] = node
    return found


def takes_int8dyn(attention: ir.Node) -> bool:
    """Whether ONNX Runtime can quantize this fused Attention into QAttention: Q, K and V of one
    width and no additive attention bias (a padding mask arrives as ``mask_index``, a causal one
    as ``unidirectional``, which QAttention keeps)."""
    sizes = attention.attributes.get_ints("qkv_hidden_sizes")
    has_bias = len(attention.inputs) > 5 and attention.inputs[5] is not None
    return (sizes is None or len(set(sizes)) == 1) and not has_bias


def bind(units: Sequence[QuantUnit], model: ir.Model) -> dict[str, list[tuple[ir.Node, QuantizableNode | None]]]:
    """What each unit is in `model` (pruned, maybe fused): unit name -> its nodes.

    A node unit binds to its node (an empty list if pruning removed it); an attention unit to
    its fused kernel (with None for the node info), or, where this candidate's fusion did not
    happen, to its Q, K and V projections.
    """
    nodes = _index(model)
    bound: dict[str, list[tuple[ir.Node, QuantizableNode | None]]] = {}
    projections = {u.nodes[0].node: u for u in units if u.op_type != ATTENTION}
    for unit in units:
        if unit.op_type != ATTENTION:
            node = _bind_node(unit.nodes[0], model, nodes)
            bound[unit.name] = [(node, unit.nodes[0])] if node is not None else []
            continue
        out_unit = projections.get(unit.out)
        out_node = _bind_node(out_unit.nodes[0], model, nodes) if out_unit is not None else nodes.get(unit.out)
        kernel = _fused_attention_node(out_node)
        if kernel is not None:
            bound[unit.name] = [(kernel, None)]
        else:
            bound[unit.name] = [(n, q) for q in unit.nodes if (n := _bind_node(q, model, nodes)) is not None]
    return bound
