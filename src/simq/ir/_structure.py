"""The result of structure analysis: what later passes may prune, drop or quantize.

Everything refers to nodes and values by name; the cleanup pipeline makes names unique, so a
`Structure` computed once stays valid for every fresh copy of the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AttentionBlock",
    "ChannelGroup",
    "ChannelUse",
    "FFNBlock",
    "Linear",
    "NodeCost",
    "QuantizableNode",
    "RemovableBlock",
    "Structure",
    "TransformerLayer",
]


@dataclass(frozen=True)
class Linear:
    """A projection ``y = x @ W (+ b)``: a MatMul or Gemm with a constant weight.

    Attributes:
        node: The MatMul/Gemm node.
        weight: The weight initializer.
        weight_layout: ``"in_out"`` when the weight is stored (in, out) as MatMul expects,
            ``"out_in"`` for a Gemm with ``transB=1``.
        bias: The bias initializer (a Gemm's third input or the constant of the Add that
            follows the MatMul), or None.
        bias_node: The Add that applies the bias, when it is a separate node.
        output: The value after the bias.
    """

    node: str
    weight: str
    weight_layout: Literal["in_out", "out_in"]
    in_features: int
    out_features: int
    bias: str | None
    bias_node: str | None
    output: str


@dataclass(frozen=True)
class AttentionBlock:
    """Multi-head self-attention found around one Softmax.

    Attributes:
        q, k, v, out: The four projections; one and the same where a fused projection computes
            Q, K and V side by side (`fused_qkv`).
        num_heads, head_size: Heads and their width (``q.out_features == num_heads * head_size``,
            three times that when fused).
        head_reshapes: The Reshape nodes that split Q, K and V into heads.
        merge_reshape: The Reshape that merges heads again before ``out``.
        reshapes: Every Reshape between the projections and the attention MatMuls (head
            splits, merges, and the exporter's transposition reshapes), whose shape constants
            may carry the head count; also the Expands of a normalization there (Swin v2).
        score_reshapes: The Reshapes of the scores or probabilities themselves (heads merged
            into the batch axis, windows split out of it): the head axis is third from the end.
        head_transposes: The Transposes that move the head axis.
        softmax: The Softmax node.
        scores, weighted: The MatMuls of two activations before the Softmax (``Q @ K^T``) and
            after it (probabilities ``@ V``).
        residual_add: The Add that adds the block's output to its input (None if absent).
        input, output: The residual stream value before and after the block.
        head_operands: Constants on the way to the scores with one entry per head, as (node,
            input index, head axis): a relative position bias (Swin), position projections
            (DeBERTa); cut with the heads.
        head_gathers: GatherElements on that way whose index is expanded to the head count
            (DeBERTa's relative positions): their index follows the pruned data instead.
        fused_qkv: One projection's output holds Q, K and V one after the other, each
            ``num_heads * head_size`` wide (ModernBERT's ``Wqkv``, split into (3, heads, size)).
    """

    q: Linear
    k: Linear
    v: Linear
    out: Linear
    num_heads: int
    head_size: int
    head_reshapes: tuple[str, ...]
    merge_reshape: str
    reshapes: tuple[str, ...]
    head_transposes: tuple[str, ...]
    softmax: str
    scores: str
    weighted: str
    residual_add: str | None
    input: str | None
    output: str
    head_operands: tuple[tuple[str, int, int], ...] = ()
    head_gathers: tuple[str, ...] = ()
    score_reshapes: tuple[str, ...] = ()
    fused_qkv: bool = False

    @property
    def projections(self) -> tuple[Linear, ...]:
        """The distinct projections that compute Q, K and V (one when fused)."""
        return (self.q,) if self.fused_qkv else (self.q, self.k, self.v)

    @property
    def qkv_parts(self) -> int:
        """How many blocks of ``num_heads * head_size`` outputs each of `projections` holds."""
        return 3 if self.fused_qkv else 1


@dataclass(frozen=True)
class FFNBlock:
    """Two projections joined by an elementwise activation: ``down(act(up(x)))``, or a gated
    one, ``down(act(a) * b)`` where ``a, b`` are the two halves of ``up(x)`` (GeGLU, SwiGLU).

    Attributes:
        up, down: The projections; ``down.in_features == width``, and ``up.out_features`` is
            `width` (twice that when gated).
        activation: The elementwise nodes between them (e.g. one Gelu, or an Erf expansion;
            the Split that halves a gated projection).
        width: The number of intermediate neurons.
        gated: Neuron ``i`` is ``up``'s outputs ``i`` and ``width + i`` together.
    """

    up: Linear
    down: Linear
    activation: tuple[str, ...]
    width: int
    residual_add: str | None
    input: str | None
    output: str
    gated: bool = False

    @property
    def up_parts(self) -> int:
        """How many blocks of `width` outputs `up` holds (a neuron is one entry of each)."""
        return 2 if self.gated else 1


@dataclass(frozen=True)
class TransformerLayer:
    """One attention block followed by one FFN block on the same residual stream.

    Attributes:
        index: Position among all layers of the model, in topological order.
        stack: Which chain of layers (tower) it belongs to; layers of one stack feed each other.
        input, output: Residual stream values entering and leaving the layer.
    """

    index: int
    stack: int
    attention: AttentionBlock
    ffn: FFNBlock
    input: str
    output: str


@dataclass(frozen=True)
class ChannelUse:
    """One node touching a channel group, and along which axis of which tensor.

    Attributes:
        node: The node name.
        role: ``"producer"`` (its output channels are the group's: Conv/Gemm/MatMul weight
            rows), ``"consumer"`` (its input channels are the group's: the next weight's input
            axis), or ``"carrier"`` (it carries the channels elementwise; per-channel
            parameters such as a BatchNorm's or a depthwise Conv's must be sliced too).
        tensor: The initializer to slice, or None for a Reshape whose constant target shape
            holds the channel count at `axis`.
        axis: The axis of `tensor` that indexes the group's channels.
    """

    node: str
    role: Literal["producer", "consumer", "carrier"]
    tensor: str | None
    axis: int


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are coupled and so must be pruned together (or not at all).

    Residual Adds join the channels of their two operands into one group.

    Attributes:
        index: Stable index of the group.
        size: Number of channels.
        uses: Every node that produces, consumes or carries the channels.
        prunable: False when some use cannot be sliced (a graph output, a reshape that mixes
            channels with other axes, an unknown op), with the reason in `reason`.
    """

    index: int
    size: int
    uses: tuple[ChannelUse, ...]
    prunable: bool
    reason: str | None = None

    @property
    def producers(self) -> tuple[str, ...]:
        """Nodes whose output channels are the group's."""
        return tuple(dict.fromkeys(u.node for u in self.uses if u.role == "producer"))

    @property
    def consumers(self) -> tuple[str, ...]:
        """Nodes whose input channels are the group's."""
        return tuple(dict.fromkeys(u.node for u in self.uses if u.role == "consumer"))


@dataclass(frozen=True)
class RemovableBlock:
    """A residual block whose output has its input's shape, so it can be dropped.

    Dropping wires `input` to every consumer of `output`.

    Attributes:
        kind: ``"transformer-layer"`` or ``"residual"`` (e.g. a ResNet identity block).
        nodes: The nodes that become dead when the block is dropped.
        weights: Initializers read only by `nodes`, which go away with the block.
        layer: The `TransformerLayer.index` for transformer layers.
    """

    index: int
    kind: Literal["transformer-layer", "residual"]
    input: str
    output: str
    nodes: tuple[str, ...]
    weights: tuple[str, ...]
    layer: int | None = None


@dataclass(frozen=True)
class QuantizableNode:
    """A node a target may run in lower precision.

    Attributes:
        kind: ``"weighted"`` when one input is a constant weight (Conv, Gemm, MatMul by a
            weight, Gather from an embedding table); ``"dynamic"`` when both operands are
            activations (the attention MatMuls).
        weight: The weight initializer for weighted nodes.
        in_features: Inputs reduced per output for weighted MatMul/Gemm, and the row width of
            an embedding Gather's vocabulary table (the axis a blocked weight quantization groups
            along); None otherwise.
    """

    node: str
    op_type: str
    kind: Literal["weighted", "dynamic"]
    weight: str | None
    in_features: int | None = None


@dataclass(frozen=True)
class NodeCost:
    """Static cost of one node for the analysed input signature."""

    node: str
    op_type: str
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int


@dataclass(frozen=True)
class Structure:
    """Everything the analysis found, for one model and one input signature.

    Attributes:
        signature: Concrete input shapes the shapes and costs were computed for.
        params: Parameters: elements of the model's floating-point initializers (shared ones
            counted once; scalars excluded).
        macs: Multiply-accumulates of one inference at `signature`.
        op_counts: Nodes per op type.
        weights: Element count of every parameter tensor (the ones `params` sums).
        attention_blocks: Softmaxes over (batch, heads, queries, keys): attention, whether or
            not a layer was recognised around it (more than ``len(layers)``: some were not).
    """

    signature: Mapping[str, tuple[int, ...]]
    params: int
    macs: int
    weight_bytes: int
    op_counts: Mapping[str, int]
    layers: tuple[TransformerLayer, ...]
    channel_groups: tuple[ChannelGroup, ...]
    removable_blocks: tuple[RemovableBlock, ...]
    quantizable: tuple[QuantizableNode, ...]
    weights: Mapping[str, int] = field(repr=False)
    costs: tuple[NodeCost, ...] = field(repr=False)
    attention_blocks: int = 0

    def cost(self, node: str) -> NodeCost:
        """The cost of the node named `node`."""
        for c in self.costs:
            if c.node == node:
                return c
        raise KeyError(node)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (`simq inspect --json`)."""
        data = dataclasses.asdict(self)
        data["signature"] = {k: list(v) for k, v in self.signature.items()}
        data["op_counts"] = dict(self.op_counts)
        data["weights"] = dict(self.weights)
        return data
