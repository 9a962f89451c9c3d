"""Structure analysis: one entry point that runs every analysis and annotates the IR."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import onnx_ir as ir

from simq.ir._blocks import find_removable_blocks
from simq.ir._channels import find_channel_groups
from simq.ir._cost import find_quantizable, node_cost, parameter_count, weight_sizes
from simq.ir._shapes import concrete_shapes, resolve_signature
from simq.ir._structure import ChannelGroup, Structure, TransformerLayer
from simq.ir._transformers import find_layers

__all__ = ["META_COST", "META_KEPT", "META_ROLE", "META_SHAPE", "analyze"]

#: `node.meta` key of the node's `NodeCost`.
META_COST = "simq.cost"
#: `node.meta` key of a short description of the node's part in the structure.
META_ROLE = "simq.role"
#: `value.meta` key of the value's concrete shape for the analysed signature.
META_SHAPE = "simq.shape"
#: `value.meta` key a pruning pass leaves on an activation it narrowed: the original channels
#: kept, so ranges calibrated on the unpruned model still apply to it.
META_KEPT = "simq.kept_channels"


def analyze(model: ir.Model, signature: Mapping[str, tuple[int, ...]] | None = None) -> Structure:
    """Find the structure of a cleaned-up model and annotate its nodes and values.

    Args:
        model: A model that went through `simq.ir.cleanup` (unique names, shapes).
        signature: Concrete input shapes for costs; symbolic axes default as in
            `resolve_signature` (batch 1, other axes 128) for inputs not given.

    Returns:
        The frozen `Structure`. Costs, roles and shapes are also left in ``node.meta`` and
        ``value.meta`` under `META_COST`, `META_ROLE` and `META_SHAPE` (not saved).
    """
    signature = resolve_signature(model, signature)
    shapes = concrete_shapes(model, signature)
    layers = find_layers(model, shapes)
    groups = find_channel_groups(model, shapes)
    blocks = find_removable_blocks(model, shapes, layers)
    quantizable = find_quantizable(model)
    costs = tuple(node_cost(node, shapes) for node in model.graph)
    params, weight_bytes = parameter_count(model)

    for node, cost in zip(model.graph, costs):
        node.meta[META_COST] = cost
        for value in node.outputs:
            if value.name in shapes:
                value.meta[META_SHAPE] = shapes[value.name]
    for node, role in _roles(layers, groups).items():
        model.graph.node(node).meta[META_ROLE] = role

    return Structure(
        signature=signature,
        params=params,
        macs=sum(c.macs for c in costs),
        weight_bytes=weight_bytes,
        op_counts=dict(Counter(node.op_type for node in model.graph)),
        layers=layers,
        channel_groups=groups,
        removable_blocks=blocks,
        quantizable=quantizable,
        weights=weight_sizes(model),
        costs=costs,
        attention_blocks=sum(1 for n in model.graph if n.op_type == "Softmax" and len(shapes.get(n.outputs[0].name, ())) == 4),
    )


def _roles(layers: tuple[TransformerLayer, ...], groups: tuple[ChannelGroup, ...]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for layer in layers:
        a, f = layer.attention, layer.ffn
        projections = (("qkv", a.q),) if a.fused_qkv else (("q", a.q), ("k", a.k), ("v", a.v))
        for name, linear in (*projections, ("out", a.out)):
            roles[linear.node] = f"layer {layer.index} attention {name}"
        roles[a.softmax] = f"layer {layer.index} attention softmax"
        roles[f.up.node] = f"layer {layer.index} ffn up"
        roles[f.down.node] = f"layer {layer.index} ffn down"
        for node in f.activation:
            roles[node] = f"layer {layer.index} ffn activation"
    for group in groups:
        for node in group.producers:
            roles.setdefault(node, f"channel group {group.index} producer")
    return roles
