"""Concrete shapes of every value for one input signature."""

from __future__ import annotations

from collections.abc import Mapping

import onnx_ir as ir
import onnx_ir.passes.common as common

from simq.errors import InvalidArgumentError, UnsupportedModelError
from simq.ir._cleanup import FoldConstantsPass

__all__ = ["DEFAULT_DIM", "concrete_shapes", "resolve_signature"]

#: Size given to a symbolic non-batch axis (e.g. sequence length) when the user names none.
DEFAULT_DIM = 128


def resolve_signature(
    model: ir.Model, overrides: Mapping[str, tuple[int, ...]] | None = None, default_dim: int = DEFAULT_DIM
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for the model's inputs.

    Symbolic axes become 1 on axis 0 (the batch) and `default_dim` elsewhere, unless
    `overrides` gives the input's whole shape.

    Raises:
        InvalidArgumentError: An override names no input or has the wrong rank.
    """
    inputs = {v.name: v for v in model.graph.inputs if v.name not in model.graph.initializers}
    overrides = dict(overrides or {})
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
            d if isinstance(d, int) else (1 if axis == 0 else default_dim) for axis, d in enumerate(value.shape)
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
