"""Removable blocks: residual blocks whose output has the shape of their input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx
import onnx_ir as ir

from simq.ir._patterns import dynamic_inputs, single_consumer
from simq.ir._structure import RemovableBlock, TransformerLayer

__all__ = ["find_removable_blocks", "value_graph"]

# An identity block's trailing activation is dropped with it: relu(x + f(x)) -> x.
_TRAILING = frozenset({"Relu", "LeakyRelu", "Clip", "HardSwish", "Gelu"})


# Their outputs depend on the input's shape, not on its data.
_SHAPE_ONLY = frozenset({"Shape", "Size"})


def value_graph(model: ir.Model) -> nx.DiGraph:
    """Data dependencies between values: an edge from each node input to each node output.

    Shape and Size read no data, so they cut the dependency: a position embedding computed
    from the token embedding's length does not make the two a residual pair.
    """
    graph = nx.DiGraph()
    for node in model.graph:
        for out in node.outputs:
            graph.add_node(out.name)
            if node.op_type in _SHAPE_ONLY:
                continue
            for value in dynamic_inputs(node):
                graph.add_edge(value.name, out.name)
    for value in model.graph.inputs:
        graph.add_node(value.name)
    return graph


def _between(graph: nx.DiGraph, start: str, end: str) -> set[str]:
    """Values on some path from `start` to `end` (`end` included, `start` not)."""
    return (nx.descendants(graph, start) & (nx.ancestors(graph, end) | {end})) - {start}


def _dead_after_drop(graph: nx.DiGraph, values: set[str], output: str) -> set[str]:
    """The part of `values` that nothing outside the block reads once `output` is rewired.

    Values that also feed later blocks (an attention mask computed inside the first layer,
    say) survive the drop and are left out.
    """
    dead = set(values)
    changed = True
    while changed:
        changed = False
        for value in list(dead):
            if value != output and any(user not in dead for user in graph.successors(value)):
                dead.discard(value)
                changed = True
    return dead


def _owned_weights(model: ir.Model, nodes: tuple[str, ...]) -> tuple[str, ...]:
    """Initializers that only `nodes` read."""
    inside = set(nodes)
    owned = []
    for name in nodes:
        for value in model.graph.node(name).inputs:
            if value is not None and value.name in model.graph.initializers and value.name not in owned:
                if all(use.node.name in inside for use in value.uses()):
                    owned.append(value.name)
    return tuple(owned)


def find_removable_blocks(
    model: ir.Model, shapes: Mapping[str, tuple[int, ...]], layers: Sequence[TransformerLayer]
) -> tuple[RemovableBlock, ...]:
    """Transformer layers, then residual blocks with an identity skip outside any layer."""
    graph = value_graph(model)
    producer = {out.name: node.name for node in model.graph for out in node.outputs}
    order = {name: i for i, name in enumerate(producer)}
    blocks: list[RemovableBlock] = []
    inside_layers: set[str] = set()
    for layer in layers:
        values = _between(graph, layer.input, layer.output)
        inside_layers |= values
        values = _dead_after_drop(graph, values, layer.output)
        nodes = tuple(producer[v] for v in sorted(values, key=order.__getitem__))
        blocks.append(
            RemovableBlock(
                len(blocks), "transformer-layer", layer.input, layer.output, nodes, _owned_weights(model, nodes), layer=layer.index
            )
        )
    for node in model.graph:
        if node.op_type != "Add" or node.outputs[0].name in inside_layers:
            continue
        operands = dynamic_inputs(node)
        if len(operands) != 2 or shapes.get(operands[0].name) is None:
            continue
        if shapes.get(operands[0].name) != shapes.get(operands[1].name):
            continue
        for skip, branch in (operands, operands[::-1]):
            if branch.name == skip.name or skip.name not in nx.ancestors(graph, branch.name):
                continue
            values = _between(graph, skip.name, branch.name) | {node.outputs[0].name}
            # Only a single-entry branch is a block: everything it reads comes from the skip.
            entries = {v.name for n in values for v in dynamic_inputs(model.graph.node(producer[n]))} - values
            if entries != {skip.name}:
                continue
            output = node.outputs[0]
            after = single_consumer(output)
            if after is not None and after.op_type in _TRAILING:
                output = after.outputs[0]
                values.add(output.name)
            values = _dead_after_drop(graph, values, output.name)
            nodes = tuple(producer[v] for v in sorted(values, key=order.__getitem__))
            blocks.append(RemovableBlock(len(blocks), "residual", skip.name, output.name, nodes, _owned_weights(model, nodes)))
            break
    return tuple(blocks)

