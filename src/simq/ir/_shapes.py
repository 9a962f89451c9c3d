"""Concrete shapes of every value for one input signature."""

from __future__ import annotations

from collections.abc import Mapping

import onnx_ir as ir
import onnx_ir.passes.common as common

from simq.errors import InvalidArgumentError, UnsupportedModelError
from simq.ir._cleanup import FoldConstantsPass
from simq.ir._frontends import SEQUENCE_LIMIT

__all__ = ["DEFAULT_DIM", "concrete_shapes", "resolve_signature", "restore_symbolic_shapes"]

#: Size given to a symbolic non-batch axis (e.g. sequence length) when the user names none.
DEFAULT_DIM = 128


def resolve_signature(
    model: ir.Model, overrides: Mapping[str, tuple[int, ...]] | None = None, default_dim: int = DEFAULT_DIM
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for the model's inputs.

    Symbolic axes become 1 on axis 0 (the batch) and `default_dim` elsewhere (at most the
    sequence limit a transformers export recorded), unless `overrides` gives the input's whole shape.

    Raises:
        InvalidArgumentError: An override names no input or has the wrong rank.
    """
    inputs = {v.name: v for v in model.graph.inputs if v.name not in model.graph.initializers}
    overrides = dict(overrides or {})
    limit = int(model.metadata_props.get(SEQUENCE_LIMIT, default_dim))
    unknown = sorted(set(overrides) - set(inputs))
    if unknown:
        raise InvalidArgumentError(f"input shape given for {', '.join(unknown)}, but the model's inputs are {', '.join(inputs)}.")
    signature: dict[str, tuple[int, ...]] = {}
    for name, value in inputs.items():
        if value.shape is None:
            if name not in overrides:
                raise UnsupportedModelError(f"input {name!r} has no declared shape; give one with --input-shape {name}=1x128.")
            signature[name] = tuple(overrides[name])
            continue
        if name in overrides:
            if len(overrides[name]) != len(value.shape):
                raise InvalidArgumentError(f"input {name!r} has rank {len(value.shape)}, but the shape given has {len(overrides[name])} axes.")
            signature[name] = tuple(int(d) for d in overrides[name])
            continue
        signature[name] = tuple(
            d if isinstance(d, int) else (1 if axis == 0 else min(default_dim, limit)) for axis, d in enumerate(value.shape)
        )
    return signature


def concrete_shapes(model: ir.Model, signature: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Infer the concrete shape of every value for `signature`, without running the model.

    Works on a shallow clone (weights are shared, not copied), so `model` is left untouched.
    With the inputs fixed, constant folding turns the exporter's Shape arithmetic into
    constants, which ONNX shape inference then reads; its data propagation alone does not see
    through sliced Shape nodes. Values whose shape cannot be inferred are left out.
    """
    clone = model.clone()
    graph = clone.graph
    for value in graph.inputs:
        if value.name in signature:
            value.shape = ir.Shape(signature[value.name])
    for node in graph:
        for out in node.outputs:
            out.shape = None
    try:
        common.ShapeInferencePass(strict_mode=False)(clone)
        FoldConstantsPass(shapes_only=True)(clone)
        for node in graph:
            for value in node.inputs:
                # Folded values keep the symbolic shape they had; their data knows better.
                if value is not None and value.const_value is not None:
                    value.shape = ir.Shape(value.const_value.shape)
        common.ShapeInferencePass(strict_mode=False)(clone)
    except Exception as e:  # onnx raises a bare InferenceError for inconsistent graphs
        raise UnsupportedModelError(f"shape inference failed for this input signature ({e}); check --input-shape.") from e
    shapes: dict[str, tuple[int, ...]] = {}
    for value in list(graph.inputs) + [o for node in graph for o in node.outputs]:
        if value.shape is not None and all(isinstance(d, int) for d in value.shape):
            shapes[value.name] = tuple(value.shape)
    for value in graph.initializers.values():
        if value.const_value is not None:
            shapes[value.name] = tuple(value.const_value.shape)
    return shapes


def restore_symbolic_shapes(model: ir.Model, signature: Mapping[str, tuple[int, ...]]) -> None:
    """Give every intermediate value its shape with the inputs' symbolic axes, in place.

    Pattern-based fusions check shapes such as ``[batch, seq, heads, head_size]``. After pruning,
    ONNX shape inference alone loses them: a broadcast Add of ``batch`` with an unknown axis, or
    a Reshape to ``[batch, seq, -1, 32]``, comes out as anonymous axes. Here the shapes are
    inferred concretely at two signatures that differ in every symbolic input axis; an axis
    equal in both is a constant, one that follows an input axis in both takes that axis' name,
    anything else (``batch * heads``) stays unknown.

    Args:
        signature: Concrete input shapes. A symbolic axis takes its size there in one inference
            (at least 2: size-1 axes broadcast) and one less in the other (one more if that
            would be 1): sizes stay within what position tables allow.
    """
    sizes: list[dict[str, int]] = [{}, {}]  # per inference: symbol -> size
    feeds: list[dict[str, tuple[int, ...]]] = [{}, {}]
    for value in model.graph.inputs:
        if value.name in model.graph.initializers or value.shape is None or value.name not in signature:
            continue
        dims: list[list[int]] = [[], []]
        for axis, dim in enumerate(value.shape):
            if isinstance(dim, int):
                dims[0].append(dim)
                dims[1].append(dim)
                continue
            symbol = dim.value or f"{value.name}:{axis}"
            if symbol not in sizes[0]:
                a = _unused_size(max(int(signature[value.name][axis]), 2), sizes[0])
                sizes[0][symbol] = a
                sizes[1][symbol] = _unused_size(a - 1 if a > 2 else a + 1, sizes[1])
            dims[0].append(sizes[0][symbol])
            dims[1].append(sizes[1][symbol])
        feeds[0][value.name], feeds[1][value.name] = tuple(dims[0]), tuple(dims[1])
    shapes = [concrete_shapes(model, feed) for feed in feeds]
    named = {(sizes[0][s], sizes[1][s]): s for s in sizes[0] if ":" not in s}
    outputs = set(map(id, model.graph.outputs))
    for node in model.graph:
        for value in node.outputs:
            a, b = shapes[0].get(value.name), shapes[1].get(value.name)
            if id(value) in outputs or a is None or b is None or len(a) != len(b):
                continue
            value.shape = ir.Shape([x if x == y else named.get((x, y)) for x, y in zip(a, b)])


def _unused_size(size: int, taken: Mapping[str, int]) -> int:
    """`size`, or the next size no other symbolic axis has, so that axes stay distinguishable."""
    while size in taken.values():
        size += 1
    return size
