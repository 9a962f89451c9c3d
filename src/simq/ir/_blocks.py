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


def value_graph(model: ir.Model) -> nx.DiGraph:
    """A directed graph over value names: an edge from each node input to each node output."""
    graph = nx.DiGraph()
    for node in model.graph:
        for out in node.outputs:
            graph.add_node(out.name)
            for value in dynamic_inputs(node):
                graph.add_edge(value.name, out.name)
    for value in model.graph.inputs:
        graph.add_node(value.name)
    return graph


def _between(graph: nx.DiGraph, start: str, end: str) -> set[str]:
    """Values on some path from `start` to `end` (both excluded from the start side)."""
    return (nx.descendants(graph, start) & (nx.ancestors(graph, end) | {end})) - {start}


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
        nodes = tuple(producer[v] for v in sorted(values, key=order.__getitem__))
        blocks.append(
            RemovableBlock(len(blocks), "transformer-layer", layer.input, layer.output, nodes, layer=layer.index)
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
            nodes = tuple(producer[v] for v in sorted(values, key=order.__getitem__))
            blocks.append(RemovableBlock(len(blocks), "residual", skip.name, output.name, nodes))
            break
    return tuple(blocks)

