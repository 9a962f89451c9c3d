"""The cleanup pipeline every model goes through after loading and after each transformation."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
import onnxscript.optimizer

from simq.ir._quiet import quiet

__all__ = ["FoldConstantsPass", "cleanup", "cleanup_passes"]

# Folding is bounded so that big weight-only expressions (e.g. a Transpose of an embedding
# table) do not double the model's memory; shape arithmetic is always small.
_FOLD_INPUT_LIMIT = 8 * 1024 * 1024
_FOLD_OUTPUT_LIMIT = 8 * 1024 * 1024


class FoldConstantsPass(ir.passes.InPlacePass):
    """Folds constant subexpressions with onnxscript's optimizer, within size limits.

    Args:
        shapes_only: Fold only nodes whose outputs are not floating point (shape arithmetic),
            so that every floating-point activation keeps its node and name.
    """

    def __init__(self, shapes_only: bool = False) -> None:
        super().__init__()
        self.shapes_only = shapes_only

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        folded = _fold_constant_norms(model.graph) if not self.shapes_only else False
        # The folder warns whenever it cannot evaluate a node it merely tried to fold; that is
        # not an error here, so keep it from users' terminals for the duration of the call.
        with quiet("onnxscript.optimizer._constant_folding"):
            result = self._fold(model)
        return ir.passes.PassResult(model, result.modified or folded)

    def _fold(self, model: ir.Model) -> ir.passes.PassResult:
        return onnxscript.optimizer.fold_constants(
            model,
            input_size_limit=_FOLD_INPUT_LIMIT,
            output_size_limit=_FOLD_OUTPUT_LIMIT,
            should_fold=_fold_only_shapes if self.shapes_only else lambda node: None,
        )


def _fold_constant_norms(graph: ir.Graph) -> bool:
    """Replace a LayerNormalization of constants (DeBERTa's normalised relative position table) by
    its value. The folder cannot (the reference evaluator returns all three of its outputs), and
    everything downstream (the per-head position projections) would stay computed at run time
    instead of becoming constants."""
    changed = False
    for node in list(graph):
        if node.op_type != "LayerNormalization" or node.outputs[0].is_graph_output() or any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            continue
        if not node.inputs or not all(v is not None and v.const_value is not None for v in node.inputs):
            continue
        data = node.inputs[0].const_value.numpy()
        x = data.astype(np.float64)
        axes = tuple(range(node.attributes.get_int("axis", -1) % x.ndim, x.ndim))
        y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + node.attributes.get_float("epsilon", 1e-5))
        y = y * node.inputs[1].const_value.numpy() + (node.inputs[2].const_value.numpy() if len(node.inputs) > 2 else 0.0)
        name = f"{node.outputs[0].name}.folded"
        value = ir.Value(name=name, const_value=ir.tensor(y.astype(data.dtype), name=name))
        value.type, value.shape = ir.TensorType(value.const_value.dtype), value.const_value.shape
        graph.register_initializer(value)
        ir.convenience.replace_all_uses_with(node.outputs[0], value)
        graph.remove(node, safe=True)
        changed = True
    return changed


def _fold_only_shapes(node: ir.Node) -> bool:
    # True overrides the folder's default refusals (it never folds ConstantOfShape, for one),
    # which shape arithmetic needs; integer shape tensors are tiny.
    return not any(out.dtype is None or out.dtype.is_floating_point() for out in node.outputs)


def cleanup_passes() -> ir.passes.PassManager:
    """Return the cleanup pipeline as one pass.

    The order matters: constant folding needs shapes, and dead-node removal cleans up what
    folding left behind; names are fixed last so that every node and value can be referred to
    by a unique name in a `Structure` and in search configs.
    """
    return ir.passes.PassManager(
        [
            common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
            common.ShapeInferencePass(),
            FoldConstantsPass(),
            common.IdentityEliminationPass(),
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),
            common.RemoveUnusedOpsetsPass(),
            common.TopologicalSortPass(),
            common.ShapeInferencePass(),
            common.NameFixPass(),
        ]
    )


def cleanup(model: ir.Model) -> ir.Model:
    """Run the cleanup pipeline on `model` in place and return it."""
    return cleanup_passes()(model).model
