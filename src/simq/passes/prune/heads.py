"""PruneHeadsPass: keep h attention heads of each transformer layer."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError, UnsupportedModelError
from simq.ir import AttentionBlock, RemovableBlock, Structure
from simq.passes._edit import array_of, constant, set_input
from simq.passes._knobs import Knob, heads_knob
from simq.passes.prune._common import (
    Narrowing,
    WidthPass,
    dropped_layers,
    in_parts,
    keep_indices,
    slice_linear_inputs,
    slice_linear_outputs,
)
from simq.passes.prune._stats import Importance, Seen, Tap, weight_in_out

__all__ = ["PruneHeadsPass"]


class PruneHeadsPass(WidthPass):
    """Keeps the `heads.<layer>` most important attention heads of each layer.

    Changes: the Q, K and V projections' weight columns and biases of dropped heads (in each
    third of a fused Q/K/V projection), the output projection's weight rows (refit by least
    squares with ``reconstruct``), every
    shape constant in the attention block that carries the head count, the entries of dropped
    heads in per-head constants on the way to the scores (Swin's and BEiT's relative position
    bias, Swin v2's logit scales, DeBERTa's position projections), and the index DeBERTa gathers
    those positions by.

    Options as in `WidthPass`.
    """

    kind = "heads"

    @staticmethod
    def importance(structure: Structure, graph: ir.Graph) -> Importance | None:
        return _HeadsImportance(structure, graph) if structure.layers else None

    @staticmethod
    def knobs(structure: Structure) -> list[Knob]:
        return [
            Knob(
                heads_knob(layer.index),
                tuple(range(1, layer.attention.num_heads + 1)),
                layer.attention.num_heads,
                f"attention heads kept in layer {layer.index}",
            )
            for layer in structure.layers
        ]

    @staticmethod
    def within(structure: Structure, block: RemovableBlock) -> list[str]:
        return [heads_knob(block.layer)] if block.layer is not None else []

    @staticmethod
    def narrowing(structure: Structure, config: Mapping[str, Hashable]) -> list[Narrowing]:
        dropped = dropped_layers(structure, config)
        cuts = []
        for layer in structure.layers:
            a = layer.attention
            h = config.get(heads_knob(layer.index), a.num_heads)
            if h != a.num_heads and layer.index not in dropped:
                width = h * a.head_size
                cuts += [n for linear in a.projections for n in Narrowing.outputs(linear, width * a.qkv_parts)]
                cuts += Narrowing.inputs(a.out, width)
        return cuts

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        dropped = dropped_layers(self.structure, self.config)
        modified = False
        for layer in self.structure.layers:
            a = layer.attention
            h = self.config.get(heads_knob(layer.index), a.num_heads)
            if layer.index in dropped or h == a.num_heads:
                continue
            if h == 0:
                raise InvalidConfigError(
                    f"{heads_knob(layer.index)}=0 removes every head of layer {layer.index}; drop the layer with its depth knob instead."
                )
            heads = keep_indices(self._importance(layer.index), a.num_heads, h, self.order)
            channels = (heads[:, None] * a.head_size + np.arange(a.head_size)).ravel()
            for linear in a.projections:
                slice_linear_outputs(graph, linear, in_parts(channels, a.num_heads * a.head_size, a.qkv_parts))
            gram = self.stats.grams[a.out.node] if self.reconstruct else None
            slice_linear_inputs(graph, a.out, channels, gram)
            for name in (*a.reshapes, *a.score_reshapes):
                _rewrite_reshape(graph, graph.node(name), a, h)
            for name, index, axis in a.head_operands:  # per-head biases or position projections
                node = graph.node(name)
                set_input(graph, node, index, np.take(array_of(node.inputs[index]), heads, axis=axis))
            for name in a.head_gathers:
                _index_follows_data(graph, graph.node(name))
            modified = True
        return ir.passes.PassResult(model, modified)


def _index_follows_data(graph: ir.Graph, gather: ir.Node) -> None:
    """Give a GatherElements an index expanded to its data's first axis (batch x kept heads)
    where it was expanded to the unpruned head count: ``Expand(x, [len(data), 1, ..., 1])``
    broadcasts `x` as the old target did on the other axes. The old index stays for other layers."""
    expand = gather.inputs[1].producer()
    data, source = gather.inputs[0], expand.inputs[0]
    rank = len(gather.inputs[1].shape) if gather.inputs[1].shape is not None else len(source.shape)
    shape = ir.node("Shape", [data], name=f"{gather.name}.data_shape")
    first = ir.node("Gather", [shape.outputs[0], constant(graph, f"{gather.name}.first_axis", np.array([0], np.int64))], name=f"{gather.name}.data_rows")
    target = ir.node(
        "Concat", [first.outputs[0], constant(graph, f"{gather.name}.broadcast", np.ones(rank - 1, np.int64))], {"axis": 0},
        name=f"{gather.name}.index_shape",
    )  # fmt: skip
    index = ir.node("Expand", [source, target.outputs[0]], name=f"{gather.name}.index")
    graph.insert_before(gather, [shape, first, target, index])
    gather.replace_input_with(1, index.outputs[0])


def _head_axis(node: ir.Node, a: AttentionBlock) -> int:
    """The axis of a Reshape's target shape whose size scales with the head count.

    Head splits (B, S, H*D) -> (B, S, H, D) carry it on axis 2 (a fused projection's
    (B, S, 3*H*D) -> (B, S, 3, H, D) on axis 3); the merge back to (B, S, H*D) on
    axis 2 as well; the exporter's reshapes between (B, H, S, D) and (B*H, S, D) on axis 1 or 0
    (and the Expand of a normalization on axis 1); reshapes of the scores third from the end.
    """
    rank_in = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    rank_out = len(node.outputs[0].shape) if node.outputs[0].shape is not None else None
    if node.name in a.head_reshapes and rank_out is not None:
        return rank_out - 2  # (B, S, H, D), or (B, S, 3, H, D) after a fused Q/K/V projection
    if node.name in a.head_reshapes or node.name == a.merge_reshape:
        return 2
    if node.name in a.score_reshapes and rank_out is not None and rank_out >= 3:
        return rank_out - 3  # (..., heads, queries, keys)
    if rank_out == 4:
        return 1
    if rank_out == 3 and rank_in == 4:
        return 0
    raise UnsupportedModelError(f"reshape {node.name} in an attention block has an unexpected rank; heads cannot be pruned here.")


def _rewrite_reshape(graph: ir.Graph, node: ir.Node, a: AttentionBlock, h: int) -> None:
    """Scale the head count in a Reshape's target shape from ``a.num_heads`` to `h`.

    Entries -1 (inferred) and 0 (copied) need no change; nor do entries computed at run time
    from Shape, which follow the pruned tensors by themselves.
    """
    axis = _head_axis(node, a)
    shape_value = node.inputs[1]
    owner, index, position = node, 1, axis
    if shape_value.const_value is None:
        concat = shape_value.producer()
        if concat is None or concat.op_type != "Concat":
            return  # computed from Shape: adapts by itself
        for i, part in enumerate(concat.inputs):
            length = part.shape[0] if part.shape is not None and len(part.shape) == 1 else 1
            if position < length:
                if part.const_value is None:
                    return
                owner, index = concat, i
                break
            position -= length
        else:
            return
    target = array_of(owner.inputs[index]).copy()
    entry = int(target.reshape(-1)[position])
    if entry in (-1, 0):
        return
    if entry % a.num_heads:
        raise UnsupportedModelError(f"reshape {node.name} has {entry} on its head axis, not a multiple of {a.num_heads} heads.")
    target.reshape(-1)[position] = entry // a.num_heads * h
    if owner is not node and len(owner.outputs[0].uses()) > 1:  # a shape other reshapes (other layers) read too
        owner = ir.node("Concat", list(owner.inputs), owner.attributes, name=f"{node.name}.shape")
        graph.insert_before(node, owner)
        node.replace_input_with(1, owner.outputs[0])
    set_input(graph, owner, index, target)


class _HeadsImportance(Importance):
    """A head's mean norm of what it adds to the output projection's result, per token."""

    def __init__(self, structure: Structure, graph: ir.Graph) -> None:
        super().__init__([Tap(layer.attention.out.node, layer.attention.out.in_features) for layer in structure.layers])
        self.attention = [layer.attention for layer in structure.layers]
        self.index = [layer.index for layer in structure.layers]
        self.weights = [weight_in_out(graph, a.out) for a in self.attention]
        self.norms = [np.zeros(a.num_heads) for a in self.attention]

    def add(self, rows: Mapping[str, np.ndarray]) -> None:
        for a, w, norms in zip(self.attention, self.weights, self.norms):
            context = rows[a.out.node]
            for h in range(a.num_heads):
                cols = slice(h * a.head_size, (h + 1) * a.head_size)
                norms[h] += np.linalg.norm(context[:, cols] @ w[cols], axis=-1).sum()

    def scores(self, seen: Seen) -> dict[int, np.ndarray]:
        return {i: norms / max(seen.rows(a.out.node), 1) for i, a, norms in zip(self.index, self.attention, self.norms)}
