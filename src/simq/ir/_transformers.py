"""Finding transformer layers (attention + FFN on one residual stream) from the graph alone.

Attention is anchored on Softmax: the scores MatMul behind it has two activation operands,
each traced back through head reshapes/transposes/scaling (and a rotary position embedding) to a
projection, or to one third of a fused Q/K/V projection; the MatMul after it is traced forward
to the output projection. An FFN is a projection whose output reaches a second projection only
through elementwise ops (after a split into halves that gate each other, in a gated FFN), with
the second projecting back to the first's input width. Nothing depends on the names an exporter happens to emit.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx_ir as ir

from simq.ir._patterns import ELEMENTWISE_UNARY, const, dynamic_inputs, is_scalar_const, linear_at, single_consumer
from simq.ir._structure import AttentionBlock, FFNBlock, Linear, TransformerLayer

__all__ = ["find_attention_blocks", "find_ffn_blocks", "find_layers"]

_NORMALIZATIONS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization"})
# Ops allowed between a projection and the scores/values MatMul: head split/merge and scaling.
_HEAD_PLUMBING = frozenset({"Reshape", "Transpose", "Mul", "Div", "Squeeze", "Unsqueeze", "Cast"})
# Ops allowed between the scores MatMul and the Softmax (scale, masks, bias) or after it.
_SCORE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Cast", "IsNaN", "Dropout", "Identity"})
# Ops that only move elements between an attention's output projection and its residual Add.
_WINDOW_PLUMBING = frozenset({"Reshape", "Transpose", "Slice", "Concat", "Identity"})
_MAX_WALK = 8


def _projection_behind(value: ir.Value) -> tuple[Linear, list[ir.Node], int | None] | None:
    """Walk back from an operand of the scores/values MatMul to the projection producing it.

    Returns the projection, the nodes on the way, and which part of a fused Q/K/V projection the
    operand is (0, 1 or 2; None for a projection of its own).
    """
    plumbing: list[ir.Node] = []
    part: int | None = None
    for _ in range(2 * _MAX_WALK):  # ModernBERT's K: scale, reshape-transpose-reshape, rotary, unbind, split
        node = value.producer()
        if node is None:
            return None
        if node.op_type in ("MatMul", "Gemm"):
            linear = linear_at(node)
            return (linear, plumbing, part) if linear is not None else None
        if node.op_type == "Add":  # the bias Add of a MatMul projection, or a rotary embedding
            rotary = _rotary(node)
            if rotary is not None:
                value, nodes = rotary
                plumbing += nodes
                continue
            for operand in dynamic_inputs(node):
                producer = operand.producer()
                linear = linear_at(producer) if producer is not None else None
                if linear is not None and linear.bias_node == node.name:
                    return linear, plumbing, part
            return None
        fused = _fused_part(node, value) if part is None else None
        if fused is not None:
            part = fused
            plumbing.append(node)
            value = node.inputs[0]
            continue
        if node.op_type not in _HEAD_PLUMBING:
            return None
        norm = _norm_of(node.inputs[1], node.inputs[0]) if node.op_type == "Div" else None
        if node.op_type in ("Mul", "Div") and norm is None and not any(is_scalar_const(v) for v in node.inputs):
            return None
        plumbing += [node, *(norm or [])]
        value = node.inputs[0]
    return None


def _rotary(add: ir.Node) -> tuple[ir.Value, list[ir.Node]] | None:
    """``x * cos + rotate_half(x) * sin`` ending at `add`: a rotary position embedding, as
    ModernBERT applies it to Q and K. Returns `x` and the embedding's nodes, or None.

    ``rotate_half(x)`` is ``Concat(-x[..., d/2:], x[..., :d/2])`` over the head size; cos and sin
    broadcast over the heads, so cutting heads leaves the embedding as it is.
    """
    muls = [v.producer() if v is not None else None for v in add.inputs]
    if len(muls) != 2 or any(m is None or m.op_type != "Mul" for m in muls):
        return None
    for direct, rotated in (muls, muls[::-1]):
        concats = [v.producer() for v in rotated.inputs if v.producer() is not None and v.producer().op_type == "Concat"]
        for x in direct.inputs:
            for concat in concats:
                halves = _rotated_halves(concat, x)
                if halves is not None:
                    return x, [add, direct, rotated, concat, *halves]
    return None


def _rotated_halves(concat: ir.Node, x: ir.Value) -> list[ir.Node] | None:
    """The Slice (and Neg) nodes by which `concat` joins two parts of `x`, or None."""
    if len(concat.inputs) != 2:
        return None
    nodes: list[ir.Node] = []
    for value in concat.inputs:
        node = value.producer() if value is not None else None
        if node is not None and node.op_type == "Neg":
            nodes.append(node)
            node = node.inputs[0].producer()
        if node is None or node.op_type != "Slice" or node.inputs[0] is not x:
            return None
        nodes.append(node)
    return nodes


def _fused_part(node: ir.Node, value: ir.Value) -> int | None:
    """Which of Q, K and V `node` takes out of a fused projection's (batch, seq, 3, heads, size)
    reshape (a Slice, Gather or Split on the axis of size 3) as `value`, or None."""
    if node.op_type not in ("Slice", "Gather", "Split"):
        return None
    shape = node.inputs[0].shape
    if shape is None or len(shape) != 5 or shape[2] != 3:
        return None
    if node.op_type == "Split":
        axis = node.attributes.get_int("axis", 0)
        return list(node.outputs).index(value) if axis in (2, -3) and len(node.outputs) == 3 else None
    if node.op_type == "Gather":
        index = const(node.inputs[1])
        return int(index.reshape(-1)[0]) if node.attributes.get_int("axis", 0) in (2, -3) and index is not None and index.size == 1 else None
    starts, ends = const(node.inputs[1]), const(node.inputs[2])
    axes = const(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None
    if starts is None or ends is None or axes is None or starts.size != 1 or int(axes.reshape(-1)[0]) not in (2, -3):
        return None
    start = int(starts.reshape(-1)[0])
    return start if 0 <= start < 3 and int(ends.reshape(-1)[0]) == start + 1 else None


def _norm_of(divisor: ir.Value, x: ir.Value) -> list[ir.Node] | None:
    """The nodes that make `divisor` the L2 norm of `x` over its last axis (clamped, maybe
    expanded back to its shape: ``F.normalize``, Swin v2's cosine attention), or None."""
    nodes: list[ir.Node] = []
    value = divisor
    for _ in range(4):
        node = value.producer()
        if node is None:
            return None
        if node.op_type == "ReduceL2":
            return nodes if node.inputs[0] is x else None
        if node.op_type not in ("Expand", "Clip", "Max", "Add"):
            return None
        nodes.append(node)
        value = node.inputs[0]
    return None


def _scores_matmul(softmax: ir.Node) -> ir.Node | None:
    """The MatMul of two activations that produces the attention scores behind `softmax`."""
    frontier = [softmax.inputs[0]]
    for _ in range(_MAX_WALK):
        next_frontier = []
        for value in frontier:
            node = value.producer()
            if node is None:
                continue
            if node.op_type == "MatMul" and len(dynamic_inputs(node)) == 2:
                return node
            if node.op_type in _SCORE_OPS:
                next_frontier.extend(dynamic_inputs(node))
            elif node.op_type == "Reshape":  # heads merged into the batch axis and back (DeBERTa)
                next_frontier.append(node.inputs[0])
        frontier = next_frontier
    return None


def _values_matmul(softmax: ir.Node) -> ir.Node | None:
    """The MatMul that applies the attention probabilities to the values."""
    frontier = [softmax.outputs[0]]
    for _ in range(_MAX_WALK):
        next_frontier = []
        for value in frontier:
            for use in value.uses():
                node = use.node
                if node.op_type == "MatMul" and use.idx == 0 and len(dynamic_inputs(node)) == 2:
                    return node
                if node.op_type in _SCORE_OPS or node.op_type == "Reshape" and use.idx == 0:
                    next_frontier.extend(node.outputs)
        frontier = next_frontier
    return None


def _score_path(start: ir.Node, stop: ir.Node) -> list[ir.Node]:
    """The nodes on the way from `start`'s output to `stop` (the scores MatMul to the Softmax,
    the Softmax to the values MatMul): score ops, and reshapes of the scores themselves."""
    path: list[ir.Node] = []
    frontier = [start.outputs[0]]
    while frontier:
        for use in frontier.pop().uses():
            node = use.node
            if node is stop or node in path or not (node.op_type in _SCORE_OPS or node.op_type == "Reshape" and use.idx == 0):
                continue
            path.append(node)
            frontier.extend(node.outputs)
    return path


def _head_operands(
    path: list[ir.Node], num_heads: int, batch: int, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[tuple[tuple[str, int, int], ...], tuple[str, ...]]:
    """What on the `path` from the scores to the Softmax has one entry per head and must be cut
    with the heads: constants as (node, input index, head axis), and the GatherElements whose
    index is expanded to the head count (DeBERTa's relative positions).

    Operands broadcast to the scores (batch, heads, queries, keys), or come as (batch x heads,
    queries, keys): a mask has size 1 on the head axis and needs no change, nor does a value
    computed at run time from the pruned tensors' shapes. Swin adds a per-head relative position
    bias (also inside its sum with the shifted-window mask); DeBERTa multiplies the query and
    key heads with per-head position projections, tiled over the batch, and gathers the result.
    """
    constants: list[tuple[str, int, int]] = []
    gathers: list[str] = []
    on_path = {o.name for n in path for o in n.outputs}

    def per_head(dims: tuple[int, ...] | None) -> bool:
        return dims is not None and len(dims) >= 3 and dims[-3] in (num_heads, num_heads * batch)

    def collect(node: ir.Node, index: int, depth: int) -> None:
        value = node.inputs[index]
        if value is None or value.name in on_path or not per_head(_dims(value, shapes)) or depth > 2 * _MAX_WALK:
            return
        if value.const_value is not None:
            constants.append((node.name, index, len(value.const_value.shape) - 3))
            return
        producer = value.producer()
        if producer is None:
            return
        kind = producer.op_type
        if kind == "Transpose":
            perm = producer.attributes.get_ints("perm", None)
            rank = len(_dims(value, shapes) or ())
            if perm is not None and perm[rank - 3] == rank - 3:  # the head axis stays where it is
                collect(producer, 0, depth + 1)
        elif kind == "GatherElements":
            collect(producer, 0, depth + 1)
            index_producer = producer.inputs[1].producer()
            if index_producer is not None and index_producer.op_type == "Expand" and per_head(_dims(producer.inputs[1], shapes)):
                gathers.append(producer.name)
        elif kind == "Tile":
            collect(producer, 0, depth + 1)
        elif kind in ("Add", "Sub", "Mul", "Div", "Where", "Cast", "MatMul"):
            for i in range(len(producer.inputs)):
                collect(producer, i, depth + 1)

    for node in path:
        for i in range(len(node.inputs)):
            collect(node, i, 0)
    return tuple(constants), tuple(gathers)


def _projection_after(value: ir.Value) -> tuple[Linear, list[ir.Node]] | None:
    """Walk forward from the attention output through the head merge to the output projection."""
    plumbing: list[ir.Node] = []
    for _ in range(_MAX_WALK):
        node = single_consumer(value)
        if node is None:
            return None
        if node.op_type in ("MatMul", "Gemm"):
            linear = linear_at(node)
            return (linear, plumbing) if linear is not None else None
        if node.op_type not in ("Reshape", "Transpose"):
            return None
        plumbing.append(node)
        value = node.outputs[0]
    return None


def _dims(value: ir.Value, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """A value's static shape: a constant's own, an activation's from the shape analysis."""
    if value.const_value is not None:
        return tuple(value.const_value.shape)
    return shapes.get(value.name)


def _reaching_add(value: ir.Value) -> tuple[ir.Node, ir.Value] | None:
    """The Add that `value` feeds, directly or through ops that only move its elements (Swin's
    window merge, the cyclic shift back as Slice + Concat, the crop of padding), scale it by a
    constant (the layer scale of BEiT, DINOv2, CaiT) or normalise it over the hidden axis (Swin
    v2), and the operand by which it arrives; None if anything else reads it on the way."""
    region: list[ir.Node] = []
    frontier, found = [value], None
    while frontier:
        current = frontier.pop()
        if current.is_graph_output() or len(region) > 2 * _MAX_WALK:
            return None
        for use in current.uses():
            node = use.node
            if node.op_type == "Add" and found is None:
                found = (node, current)
            elif (
                node.op_type in _WINDOW_PLUMBING and (use.idx == 0 or node.op_type == "Concat")
                or node.op_type == "Mul" and all(v is current or v.const_value is not None for v in node.inputs)  # a layer scale
                or node.op_type in _NORMALIZATIONS and use.idx == 0  # the branch normalised before the sum (Swin v2)
            ):  # fmt: skip
                if node not in region:
                    region.append(node)
                    frontier.extend(node.outputs)
            else:
                return None
    moved = {value.name} | {o.name for n in region for o in n.outputs}
    if any(n.op_type == "Concat" and not all(v is not None and v.name in moved for v in n.inputs) for n in region):
        return None  # a Concat that joins other data is not a move
    return found


def _residual(
    graph_nodes: Mapping[str, ir.Node], linear: Linear, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[str | None, str | None, str]:
    """The residual Add after a block's last projection: (add node, block input, block output).

    In a post-norm block (BERT) the Add feeds a normalization whose output is the block output:
    the stream comes out of a normalization, or it goes on from this one into the next residual
    Add (the first layer after a projection of the embeddings, as in ELECTRA and ALBERT, reads
    the projection's output). In a pre-norm block (ViT) the Add output is the block output.
    Between the projection and the Add there may be ops that only move elements (Swin), a layer
    scale (BEiT, DINOv2) or a normalization of the branch (Swin v2).
    """
    out_node = graph_nodes[linear.bias_node or linear.node]
    found = _reaching_add(out_node.outputs[0])
    if found is None:
        return None, None, linear.output
    add, out = found
    skip = next((v for v in add.inputs if v is not out), None)
    if skip is None or skip.const_value is not None or shapes.get(skip.name) != shapes.get(out.name):
        return None, None, linear.output
    output = add.outputs[0]
    norm = single_consumer(output)
    skip_producer = skip.producer()
    if norm is not None and norm.op_type in _NORMALIZATIONS and (
        skip_producer is not None and skip_producer.op_type == norm.op_type or any(use.node.op_type == "Add" for use in norm.outputs[0].uses())
    ):
        output = norm.outputs[0]
    return add.name, skip.name, output.name


def find_attention_blocks(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> list[AttentionBlock]:
    """Every multi-head self-attention block, in topological order."""
    nodes = {node.name: node for node in model.graph}
    blocks = []
    for softmax in (n for n in model.graph if n.op_type == "Softmax"):
        scores, weighted = _scores_matmul(softmax), _values_matmul(softmax)
        if scores is None or weighted is None:
            continue
        q, k, v = (_projection_behind(x) for x in (scores.inputs[0], scores.inputs[1], weighted.inputs[1]))
        out = _projection_after(weighted.outputs[0])
        if q is None or k is None or v is None or out is None:
            continue
        score_shape = shapes.get(scores.outputs[0].name)
        if score_shape is None or len(score_shape) != 4:  # (batch x heads, queries, keys): the Softmax's
            score_shape = shapes.get(softmax.inputs[0].name)
        if score_shape is None or len(score_shape) != 4:
            continue
        num_heads = score_shape[1]
        parts = (q[2], k[2], v[2])
        fused = parts == (0, 1, 2) and q[0] == k[0] == v[0]
        if parts != (None, None, None) and not fused:
            continue
        hidden = q[0].out_features // 3 if fused else q[0].out_features
        if not (q[0].out_features == k[0].out_features == v[0].out_features) or hidden % num_heads:
            continue  # grouped-query attention and friends are not handled yet
        plumbing = list(dict.fromkeys(q[1] + k[1] + v[1]))  # a fused projection's reshape is on all three ways
        splits = tuple(
            n.name for n in plumbing
            if n.op_type == "Reshape" and shapes.get(n.inputs[0].name, (0,))[-1] == q[0].out_features
            and len(shapes.get(n.outputs[0].name, ())) == (5 if fused else 4)
        )  # fmt: skip
        merges = [n for n in out[1] if n.op_type == "Reshape"]
        if not merges:
            continue
        add, block_input, block_output = _residual(nodes, out[0], shapes)
        path = _score_path(scores, softmax)
        head_operands, head_gathers = _head_operands(path, int(num_heads), int(score_shape[0]), shapes)
        path += _score_path(softmax, weighted)
        score_reshapes = tuple(n.name for n in path if n.op_type == "Reshape")
        blocks.append(
            AttentionBlock(
                q=q[0], k=k[0], v=v[0], out=out[0],
                num_heads=int(num_heads), head_size=hidden // int(num_heads),
                head_reshapes=splits, merge_reshape=merges[-1].name,
                reshapes=tuple(n.name for n in plumbing + out[1] if n.op_type in ("Reshape", "Expand")), score_reshapes=score_reshapes,
                head_transposes=tuple(n.name for n in plumbing + out[1] if n.op_type == "Transpose"),
                softmax=softmax.name, scores=scores.name, weighted=weighted.name,
                residual_add=add, input=block_input, output=block_output,
                head_operands=head_operands, head_gathers=head_gathers, fused_qkv=fused,
            )
        )  # fmt: skip
    return blocks


def _activation_path(start: ir.Value, up: Linear) -> tuple[list[ir.Node], Linear, bool] | None:
    """Follow `start` through elementwise ops to a projection back to `up`'s input width; a
    gated FFN's `start` is first split into halves that meet again in the elementwise ops.

    The region is collected first and checked afterwards, because an op such as the final Mul
    of ``x * sigmoid(1.702 * x)`` is reached from ``x`` before its other operand is.
    Returns the region, the down projection and whether the FFN is gated.
    """
    split = _halves(start)
    region: list[ir.Node] = [split] if split is not None else []
    frontier = list(split.outputs) if split is not None else [start]
    width = up.out_features // 2 if split is not None else up.out_features
    down: tuple[ir.Node, Linear] | None = None
    while frontier:
        value = frontier.pop()
        if value.is_graph_output():
            return None
        for use in value.uses():
            node = use.node
            if node in region or (down is not None and node is down[0]):
                continue
            if node.op_type in ("MatMul", "Gemm") and use.idx == 0:
                linear = linear_at(node)
                if linear is None or down is not None:
                    return None
                if linear.in_features != width or linear.out_features != up.in_features:
                    return None
                down = (node, linear)
            elif node.op_type in ELEMENTWISE_UNARY:
                region.append(node)
                frontier.extend(node.outputs)
            else:
                return None
    region_values = {start.name} | {o.name for n in region for o in n.outputs}
    for node in region:
        if node is not split and not all(v.name in region_values or is_scalar_const(v) for v in node.inputs if v is not None):
            return None
    if down is None or len(region) == (split is not None) or down[0].inputs[0].name not in region_values:
        return None
    return region, down[1], split is not None


def _halves(value: ir.Value) -> ir.Node | None:
    """The Split that is `value`'s only reader and cuts its last axis into two equal halves (a
    gated FFN's ``chunk(2, dim=-1)``), or None."""
    uses = value.uses()
    if len(uses) != 1 or uses[0].node.op_type != "Split" or uses[0].idx != 0 or len(uses[0].node.outputs) != 2:
        return None
    split = uses[0].node
    rank = len(value.shape) if value.shape is not None else None
    if rank is None or split.attributes.get_int("axis", 0) not in (-1, rank - 1):
        return None
    given = len(split.inputs) > 1 and split.inputs[1] is not None
    sizes = const(split.inputs[1]) if given else split.attributes.get_ints("split", None)  # an input from opset 13 on
    if given and sizes is None:
        return None  # sizes computed at run time
    return split if sizes is None or (len(sizes) == 2 and sizes[0] == sizes[1]) else None


def find_ffn_blocks(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> list[FFNBlock]:
    """Every feed-forward block (up projection, activation, down projection), in order."""
    nodes = {node.name: node for node in model.graph}
    blocks = []
    for node in model.graph:
        up = linear_at(node)
        if up is None:
            continue
        path = _activation_path(nodes[up.bias_node or up.node].outputs[0], up)
        if path is None:
            continue
        activation, down, gated = path
        add, block_input, block_output = _residual(nodes, down, shapes)
        blocks.append(
            FFNBlock(
                up=up, down=down, activation=tuple(n.name for n in activation), width=down.in_features,
                residual_add=add, input=block_input, output=block_output, gated=gated,
            )
        )  # fmt: skip
    return blocks


def find_layers(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> tuple[TransformerLayer, ...]:
    """Transformer layers: an attention block whose output is an FFN block's input.

    Layers are numbered in topological order; consecutive layers where one's output is the
    next one's input form a stack (one tower of a multi-modal model is one stack).
    """
    ffn_by_input = {f.input: f for f in find_ffn_blocks(model, shapes) if f.input is not None}
    layers: list[TransformerLayer] = []
    stack_of_output: dict[str, int] = {}
    stacks = 0
    for attention in find_attention_blocks(model, shapes):
        ffn = ffn_by_input.get(attention.output)
        if attention.input is None or ffn is None:
            continue
        stack = stack_of_output.get(attention.input)
        if stack is None:
            stack, stacks = stacks, stacks + 1
        stack_of_output[ffn.output] = stack
        layers.append(
            TransformerLayer(index=len(layers), stack=stack, attention=attention, ffn=ffn, input=attention.input, output=ffn.output)
        )
    return tuple(layers)
