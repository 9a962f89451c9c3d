"""Editing initializers without touching anyone else's copy.

Exporters deduplicate identical constants, so one initializer (a zero bias, a shape constant)
may feed many nodes. A pass that slices it for one node must give that node a new tensor.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["array_of", "constant", "input_index", "set_input"]


def array_of(value: ir.Value) -> np.ndarray:
    """The constant data of `value` (an initializer)."""
    if value.const_value is None:
        raise ValueError(f"{value.name} is not a constant")
    return value.const_value.numpy()


def constant(graph: ir.Graph, name: str, array: np.ndarray, dtype: ir.DataType | None = None) -> ir.Value:
    """A new initializer holding `array`, named `name` (or ``name.1``, ... if that is taken)."""
    base, n = name, 0
    while name in graph.initializers:
        n += 1
        name = f"{base}.{n}"
    array = np.asarray(array)
    tensor = ir.tensor(array if array.flags.c_contiguous else array.copy(), dtype=dtype, name=name)  # a scalar stays one
    value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=tensor.shape, const_value=tensor)
    graph.register_initializer(value)
    return value


def set_input(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray) -> ir.Value:
    """Make `node`'s input `index` a new initializer holding `array`; other users keep theirs.

    When `node` was the old initializer's only user, the new one takes over its name, so a
    later edit of the same node can still find the tensor by the name the analysis recorded.
    """
    old = node.inputs[index]
    base = old.name if old is not None and old.name else f"{node.name}_input{index}"
    if old is not None and graph.initializers.get(base) is old and len(old.uses()) == 1 and not old.is_graph_input():
        graph.initializers.pop(base)
    value = constant(graph, base, array)
    node.replace_input_with(index, value)
    return value


def input_index(node: ir.Node, name: str) -> int:
    """Position of the input named `name` in `node`."""
    for i, value in enumerate(node.inputs):
        if value is not None and value.name == name:
            return i
    raise KeyError(f"{node.name} has no input {name}")
