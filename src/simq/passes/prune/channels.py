"""PruneChannelsPass: keep k channels of each coupled channel group of a CNN."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import onnx_ir as ir

from simq.ir import META_KEPT, ChannelGroup, RemovableBlock, Structure
from simq.passes._edit import array_of, input_index, set_input
from simq.passes._knobs import Knob, channels_knob
from simq.passes.prune._common import Narrowing, WidthPass, grid, keep_indices
from simq.passes.prune._refit import refit
from simq.passes.prune._stats import Importance, Seen, Tap

__all__ = ["PruneChannelsPass"]


class PruneChannelsPass(WidthPass):
    """Keeps the `channels.<group>` most important channels of each prunable group.

    Changes: the producers' weight rows and biases, the carriers' per-channel parameters (and
    a depthwise convolution's ``group``), the consumers' weight input slices, and a pooled
    feature Reshape's constant width. With ``reconstruct``, consumers that are Gemm/MatMul or
    1x1 convolutions are refit by least squares; wider kernels are only sliced.
    """

    kind = "channels"

    @staticmethod
    def importance(structure: Structure, graph: ir.Graph) -> Importance | None:
        groups = [g for g in structure.channel_groups if g.prunable]
        return _ChannelsImportance(groups, graph) if groups else None

    @staticmethod
    def knobs(structure: Structure) -> list[Knob]:
        return [
            Knob(channels_knob(g.index), grid(g.size), g.size, f"channels kept in group {g.index}")
            for g in structure.channel_groups
            if g.prunable
        ]

    @staticmethod
    def within(structure: Structure, block: RemovableBlock) -> list[str]:
        """Groups used only inside the block."""
        nodes = set(block.nodes)
        return [channels_knob(g.index) for g in structure.channel_groups if g.prunable and {u.node for u in g.uses} <= nodes]

    @staticmethod
    def narrowing(structure: Structure, config: Mapping[str, Hashable]) -> list[Narrowing]:
        cuts = []
        for group in structure.channel_groups:
            k = config.get(channels_knob(group.index), group.size)
            if group.prunable and k != group.size:
                tensors = {u.tensor: u for u in group.uses if u.tensor is not None}  # a tensor cut once
                cuts += [Narrowing(tensor, u.axis, k, group.size, u.node) for tensor, u in tensors.items()]
        return cuts

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for group in self.structure.channel_groups:
            k = self.config.get(channels_knob(group.index), group.size)
            if not group.prunable or k == group.size:
                continue
            self._prune(model.graph, group, keep_indices(self._importance(group.index), group.size, k, self.order))
            modified = True
        return ir.passes.PassResult(model, modified)

    def _prune(self, graph: ir.Graph, group: ChannelGroup, keep: np.ndarray) -> None:
        for use in group.uses:
            node = graph.node(use.node)
            if use.tensor is None:  # a Reshape of pooled features with a constant width
                target = array_of(node.inputs[1]).copy()
                if target[use.axis] == group.size:
                    target[use.axis] = len(keep)
                    set_input(graph, node, 1, target)
                continue
            index = input_index(node, use.tensor)
            if use.role == "consumer":
                node.inputs[0].meta[META_KEPT] = keep
            gram = self.stats.grams.get(use.node) if self.reconstruct and self.stats is not None else None
            if use.role == "consumer" and gram is not None:
                _refit_consumer(graph, node, index, use.axis, keep, gram)
                continue
            set_input(graph, node, index, np.take(array_of(node.inputs[index]), keep, axis=use.axis))
            if use.role == "carrier" and node.op_type == "Conv" and index == 1:
                node.attributes["group"] = ir.AttrInt64("group", len(keep))  # depthwise: one group per channel


def _refit_consumer(graph: ir.Graph, node: ir.Node, weight_index: int, in_axis: int, keep: np.ndarray, gram: np.ndarray) -> None:
    """Slice a Gemm/MatMul/1x1-Conv consumer's inputs to `keep` and refit it by least squares."""
    w = array_of(node.inputs[weight_index])
    w_io = w[:, :, 0, 0].T if node.op_type == "Conv" else (w if in_axis == 0 else w.T)
    site = _bias_site(node)
    bias = array_of(site[0].inputs[site[1]]) if site is not None else None
    new_w, new_b = refit(gram, keep, w_io, bias)
    if node.op_type == "Conv":
        new_w = new_w.T[:, :, None, None]
    elif in_axis == 1:
        new_w = new_w.T
    set_input(graph, node, weight_index, new_w)
    if site is not None:
        set_input(graph, site[0], site[1], new_b)


def _bias_site(node: ir.Node) -> tuple[ir.Node, int] | None:
    """Where a consumer's bias lives: its third input, or the constant of the Add after a MatMul."""
    if node.op_type in ("Conv", "Gemm"):
        return (node, 2) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    users = list(node.outputs[0].uses())
    if len(users) == 1 and users[0].node.op_type == "Add":
        add = users[0].node
        for i, value in enumerate(add.inputs):
            if value is not None and value.const_value is not None and value.const_value.shape == (node.inputs[1].const_value.shape[1],):
                return add, i
    return None


class _ChannelsImportance(Importance):
    """A channel's mean absolute value into each consumer times the norm of the consumer's
    weight slice that reads it, summed over consumers (Gram matrices only for consumers a
    least-squares refit can handle: Gemm, MatMul, 1x1 convolutions)."""

    def __init__(self, groups: list[ChannelGroup], graph: ir.Graph) -> None:
        taps = []
        for group in groups:
            for use in group.uses:
                if use.role == "consumer":
                    node = graph.node(use.node)
                    refittable = node.op_type in ("Gemm", "MatMul") or (
                        node.op_type == "Conv" and all(d == 1 for d in node.inputs[1].const_value.shape[2:])
                    )
                    taps.append(Tap(use.node, group.size, refittable))
        super().__init__(taps)
        self.groups, self.graph = groups, graph

    def scores(self, seen: Seen) -> dict[int, np.ndarray]:
        scores = {}
        for group in self.groups:
            score = np.zeros(group.size)
            for use in group.uses:
                if use.role == "consumer":
                    w = self.graph.initializers[use.tensor].const_value.numpy()
                    w = np.moveaxis(w, use.axis, 1) if w.ndim > 1 else w
                    score += seen.mean_abs(use.node) * _in_norms(w)
            scores[group.index] = score
        return scores


def _in_norms(w: np.ndarray) -> np.ndarray:
    """L2 norm of each input channel's slice of a weight read by a consumer."""
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=tuple(i for i in range(w.ndim) if i != 1)))
