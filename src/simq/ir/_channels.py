"""Coupled channel groups of convolutional (and plain MLP) networks.

Every Conv (and every Gemm/MatMul on 2-D activations) opens a new channel space on its
output. Ops that keep channels aligned carry the space forward; a residual Add merges the
spaces of its operands (a union-find), because both sides must keep the same channels. A group
is prunable only if every use of it can be sliced along its channel axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import networkx as nx
import onnx_ir as ir

from simq.ir._patterns import const, dynamic_inputs, linear_at
from simq.ir._structure import ChannelGroup, ChannelUse

__all__ = ["find_channel_groups"]

# Ops that keep every channel in place (axis 1 of NCHW tensors).
_CHANNEL_PRESERVING = frozenset(
    {
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Gelu",
        "Mish", "Softplus", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool",
        "GlobalMaxPool", "LpPool",
    }
)  # fmt: skip
_BROADCAST_BINARY = frozenset({"Add", "Sub", "Mul", "Div"})


@dataclass
class _Space:
    size: int
    uses: list[ChannelUse] = field(default_factory=list)
    blocked: str | None = None


class _Tracker:
    def __init__(self) -> None:
        self.spaces: list[_Space] = []
        self.union = nx.utils.UnionFind()
        self.of_value: dict[str, int] = {}

    def new(self, size: int, use: ChannelUse) -> int:
        self.spaces.append(_Space(size, [use]))
        index = len(self.spaces) - 1
        self.union[index]  # registers the element
        return index

    def space(self, value: ir.Value | None) -> int | None:
        return None if value is None else self.of_value.get(value.name)

    def use(self, space: int, use: ChannelUse) -> None:
        self.spaces[space].uses.append(use)

    def block(self, space: int, reason: str) -> None:
        if self.spaces[space].blocked is None:
            self.spaces[space].blocked = reason


def _per_channel(value: ir.Value, channels: int, rank: int, axis: int) -> bool:
    """True if constant `value` broadcasts against a rank-`rank` tensor along `axis` only."""
    data = const(value)
    if data is None:
        return False
    shape = (1,) * (rank - data.ndim) + tuple(data.shape)
    return len(shape) == rank and shape[axis] == channels and all(d == 1 for i, d in enumerate(shape) if i != axis)


def find_channel_groups(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> tuple[ChannelGroup, ...]:
    """Coupled channel groups, in the order their first producer appears."""
    t = _Tracker()
    for node in model.graph:
        _visit(node, t, shapes)
    for value in model.graph.outputs:
        space = t.space(value)
        if space is not None:
            t.block(space, f"reaches the graph output {value.name}")

    merged: dict[int, list[int]] = {}
    for index in range(len(t.spaces)):
        merged.setdefault(t.union[index], []).append(index)
    groups = []
    for members in sorted(merged.values(), key=min):
        spaces = [t.spaces[i] for i in members]
        reason = next((s.blocked for s in spaces if s.blocked), None)
        uses = tuple(u for s in spaces for u in s.uses)
        if reason is None and not any(u.role == "consumer" for u in uses):
            reason = "no node consumes these channels"
        groups.append(ChannelGroup(index=len(groups), size=spaces[0].size, uses=uses, prunable=reason is None, reason=reason))
    return tuple(groups)


def _visit(node: ir.Node, t: _Tracker, shapes: Mapping[str, tuple[int, ...]]) -> None:
    op = node.op_type
    out = node.outputs[0] if node.outputs else None
    in_spaces = {v.name: t.space(v) for v in dynamic_inputs(node) if t.space(v) is not None}

    if op in ("Conv", "ConvTranspose") and const(node.inputs[1]) is not None:
        weight = node.inputs[1]
        w = const(weight)
        group = node.attributes.get_int("group", 1)
        src = t.space(node.inputs[0])
        out_channels = w.shape[0] if op == "Conv" else w.shape[1] * group
        in_channels = w.shape[1] * group if op == "Conv" else w.shape[0]
        bias = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if group == 1:
            if src is not None:
                t.use(src, ChannelUse(node.name, "consumer", weight.name, 1 if op == "Conv" else 0))
            space = t.new(out_channels, ChannelUse(node.name, "producer", weight.name, 0 if op == "Conv" else 1))
            if bias:
                t.use(space, ChannelUse(node.name, "producer", bias, 0))
            t.of_value[out.name] = space
        elif op == "Conv" and group == in_channels == out_channels and src is not None:
            # Depthwise: channel i in gives channel i out, so the space flows through.
            t.use(src, ChannelUse(node.name, "carrier", weight.name, 0))
            if bias:
                t.use(src, ChannelUse(node.name, "carrier", bias, 0))
            t.of_value[out.name] = src
        else:
            if src is not None:
                t.block(src, f"grouped convolution {node.name}")
            t.of_value[out.name] = t.new(out_channels, ChannelUse(node.name, "producer", weight.name, 0))
            t.block(t.of_value[out.name], f"grouped convolution {node.name}")
        return

    linear = linear_at(node) if op in ("MatMul", "Gemm") else None
    src_value = node.inputs[0] if node.inputs else None
    if linear is not None and len(shapes.get(src_value.name, ())) == 2:
        in_axis, out_axis = (0, 1) if linear.weight_layout == "in_out" else (1, 0)
        src = t.space(src_value)
        if src is not None:
            t.use(src, ChannelUse(node.name, "consumer", linear.weight, in_axis))
        space = t.new(linear.out_features, ChannelUse(node.name, "producer", linear.weight, out_axis))
        if linear.bias:
            t.use(space, ChannelUse(linear.bias_node or node.name, "producer", linear.bias, 0))
        t.of_value[linear.output] = space
        return

    if not in_spaces:
        return
    spaces = list(in_spaces.values())
    rank = len(shapes.get(node.inputs[0].name, ())) if node.inputs[0] is not None else 0

    if op in _CHANNEL_PRESERVING:
        t.of_value[out.name] = spaces[0]
        return
    if op == "BatchNormalization":
        for param in node.inputs[1:5]:
            t.use(spaces[0], ChannelUse(node.name, "carrier", param.name, 0))
        t.of_value[out.name] = spaces[0]
        return
    if op in _BROADCAST_BINARY:
        dynamic = dynamic_inputs(node)
        if len(dynamic) == 2 and all(v.name in in_spaces for v in dynamic):
            if shapes.get(dynamic[0].name) != shapes.get(dynamic[1].name):
                for s in spaces:
                    t.block(s, f"{node.name} broadcasts between different shapes")
            t.union.union(*spaces)
            t.of_value[out.name] = spaces[0]
            return
        if len(dynamic) == 1:
            other = next(v for v in node.inputs if v is not dynamic[0])
            size = t.spaces[spaces[0]].size
            data = const(other)
            if data is not None and data.size == 1:
                t.of_value[out.name] = spaces[0]
                return
            if _per_channel(other, size, rank, 1 if rank > 2 else rank - 1):
                t.use(spaces[0], ChannelUse(node.name, "carrier", other.name, (const(other).ndim - rank) + (1 if rank > 2 else rank - 1)))
                t.of_value[out.name] = spaces[0]
                return
    if op in ("ReduceMean", "ReduceMax", "ReduceSum") and rank == 4:
        axes = const(node.inputs[1]) if len(node.inputs) > 1 else None
        if axes is not None and 1 not in {int(a) % rank for a in axes.ravel()}:
            t.of_value[out.name] = spaces[0]
            return
    if op in ("Flatten", "Reshape", "Squeeze"):
        in_shape, out_shape = shapes.get(node.inputs[0].name), shapes.get(out.name)
        # Pooled features (N, C, 1, 1) -> (N, C) keep channels on axis 1.
        if in_shape and out_shape and len(out_shape) == 2 and in_shape[:2] == out_shape and all(d == 1 for d in in_shape[2:]):
            if op == "Reshape":  # its constant target may spell out the width
                t.use(spaces[0], ChannelUse(node.name, "carrier", None, 1))
            t.of_value[out.name] = spaces[0]
            return
    for s in spaces:
        t.block(s, f"{op} node {node.name} cannot be sliced along channels")
