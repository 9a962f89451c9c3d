"""What values each model input takes, read from the graph: shapes, and the range of integer inputs.

Synthetic inputs must respect them: a token id beyond the embedding table it indexes crashes the
runtime, a ``token_type_ids`` of 5 where the model has two segment embeddings too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

__all__ = ["InputDomain", "input_domains", "sequence_limit"]

# Ops an index passes through unchanged on its way to the embedding Gather.
_CARRIERS = frozenset({"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand", "Slice"})


@dataclass(frozen=True)
class InputDomain:
    """One model input and the values it takes.

    Attributes:
        shape: Per axis: a size (fixed), the symbol's name, or None (free, unnamed).
        high: For an integer input that indexes a table (an embedding): its number of rows,
            so valid values are ``0 .. high - 1``; None when no table was found.
        mask: An integer input used as a 0/1 mask (named like one, and indexing no table).
        positions: For a text model's token inputs: the longest sequence it takes (`sequence_limit`).
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]
    high: int | None = None
    mask: bool = False
    positions: int | None = None

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(self.dtype, np.integer) or self.dtype == np.bool_

    def fixed(self, axis: int) -> int | None:
        dim = self.shape[axis] if axis < len(self.shape) else None
        return dim if isinstance(dim, int) else None


def _table_rows(value: ir.Value) -> int | None:
    """Rows of the smallest constant table `value` indexes (through casts and reshapes)."""
    rows, frontier, seen = [], [value], set()
    while frontier:
        v = frontier.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        for use in v.uses():
            node = use.node
            if node.op_type == "Gather" and use.idx == 1 and node.inputs[0].const_value is not None:
                rows.append(int(node.inputs[0].const_value.shape[node.attributes.get_int("axis", 0)]))
            elif node.op_type in _CARRIERS and use.idx == 0:
                frontier.extend(node.outputs)
    return min(rows) if rows else None


def _position_rooted(value: ir.Value, depth: int = 32) -> bool:
    """Whether `value` is computed from shapes and ``arange`` constants alone (the sliced
    ``position_ids`` buffer of an export): no graph input's values and no other index buffer
    (token-type ids) reach it."""
    frontier, seen, arange = [value], set(), False
    while frontier and len(seen) < depth:
        v = frontier.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.const_value is not None:
            array = v.const_value.numpy()
            if array.dtype.kind in "iu" and array.size >= 2:  # a buffer of index values: must be positions
                flat = array.reshape(-1, array.shape[-1])[0]
                if not np.array_equal(flat, np.arange(len(flat))):
                    return False  # e.g. a buffer of token-type ids
                arange = True
            continue
        producer = v.producer()
        if producer is None:
            return False  # a graph input's values
        if producer.op_type == "Shape":
            continue  # sizes, not values
        frontier.extend(i for i in producer.inputs if i is not None)
    return arange and not frontier


def sequence_limit(model: ir.Model) -> int | None:
    """The longest sequence a text model takes: what its export recorded, else the rows of its
    position table (a constant table gathered by positions computed from shapes and an
    ``arange`` buffer alone, such as a sliced ``position_ids``); None when neither is found."""
    from simq.ir._frontends import SEQUENCE_LIMIT

    recorded = model.metadata_props.get(SEQUENCE_LIMIT)
    if recorded:
        return int(recorded)
    rows = [
        int(node.inputs[0].const_value.shape[0])
        for node in model.graph
        if node.op_type == "Gather" and node.inputs[0].const_value is not None and node.attributes.get_int("axis", 0) == 0
        and node.inputs[1] is not None and node.inputs[1].const_value is None and _position_rooted(node.inputs[1])
    ]  # fmt: skip
    return min(rows) if rows else None


def input_domains(model: ir.Model) -> list[InputDomain]:
    """Every graph input (initializers excluded) with its shape and value range."""
    found = []
    limit = sequence_limit(model)
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        shape = tuple(d if isinstance(d, int) else (d.value if d.value else None) for d in value.shape) if value.shape is not None else ()
        high = _table_rows(value) if np.issubdtype(dtype, np.integer) else None
        mask = high is None and (np.issubdtype(dtype, np.integer) or dtype == np.bool_) and "mask" in value.name.lower()
        positions = limit if np.issubdtype(dtype, np.integer) and len(shape) == 2 else None
        found.append(InputDomain(value.name, dtype, shape, high, mask, positions))
    return found
