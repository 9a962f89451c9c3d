"""Restoring symbolic shapes after pruning: what the fusion rules check."""

from __future__ import annotations

import onnx_ir as ir

import simq.ir as sir
from simq.passes.prune import PruneOptions, prune


def test_pruned_values_get_named_axes_and_the_pruned_sizes(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    signature = dict(zoo.entry("bert-tiny").signature)
    structure = sir.analyze(model, signature)
    layer = structure.layers[0]
    pruned = prune(model.clone(), structure, {f"heads.{layer.index}": 1}, None, PruneOptions(order="first", reconstruct=False))
    sir.restore_symbolic_shapes(pruned, signature)
    values = {v.name: v for node in pruned.graph for v in node.outputs}
    q = pruned.graph.node(layer.attention.q.node).outputs[0]
    assert list(q.shape) == [ir.SymbolicDim("batch"), ir.SymbolicDim("seq"), layer.attention.head_size]
    split = [values[pruned.graph.node(n).outputs[0].name] for n in layer.attention.head_reshapes if n in {x.name for x in pruned.graph}]
    assert split and all(1 in list(v.shape) for v in split)  # one head left, on a named batch and sequence
    assert all(ir.SymbolicDim("batch") in list(v.shape) for v in split)
