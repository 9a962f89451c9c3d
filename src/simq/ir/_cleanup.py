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
        folded = not self.shapes_only and (_fold_constant_norms(model.graph) | _fold_constant_rows(model.graph))
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


#: Ops whose output holds only elements of their first input (moved, repeated or selected): made
#: from a constant that holds one value, their output holds that value everywhere.
_ELEMENT_MOVERS = frozenset({"Expand", "Gather", "GatherElements", "Slice", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Tile", "Transpose", "Flatten"})


def _one_value(value: ir.Value | None, depth: int = 8) -> int | float | None:
    """The value every element of `value` holds, where `value` is made from a constant that holds
    one value by ops that only move elements (`_ELEMENT_MOVERS`); else None."""
    if value is None or depth == 0:
        return None
    if value.const_value is not None:
        data = value.const_value.numpy()
        return data.flat[0].item() if data.size and (data == data.flat[0]).all() else None
    node = value.producer()
    return _one_value(node.inputs[0], depth - 1) if node is not None and node.op_type in _ELEMENT_MOVERS and node.inputs else None


def _table(value: ir.Value | None) -> np.ndarray | None:
    """The 2-D constant table a Gather producing `value` reads rows of, if one does."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "Gather" or node.attributes.get_int("axis", 0) != 0:
        return None
    table = node.inputs[0].const_value
    return table.numpy() if table is not None and len(table.shape) == 2 else None


def _fold_constant_rows(graph: ir.Graph) -> bool:
    """Fold an embedding row that every position reads into the table added next to it: BERT's
    token types, which an export without a ``token_type_ids`` input bakes in as a buffer of
    zeros. ``Add(Add(x, Gather(types, zeros)), Gather(positions, ids))`` becomes
    ``Add(x, Gather(positions + types[0], ids))``: the index chain, a Gather and an Add less
    per run, after quantization a DequantizeLinear less, and no precision knob for a table whose
    one row every token reads. Small on the unpruned minilm-tweets (AVX-512 VNNI Xeon, 64 tokens,
    docs/LEVERS_xeon.md: 0.842 and 0.838x the recipe after, 0.844 and 0.843 before, within the
    runs' spread). `x` must have the gathered rows' shape, so that adding one row instead
    broadcasts to the same result."""
    changed = False
    for node in list(graph):
        if node.op_type != "Gather" or len(node.outputs[0].uses()) != 1 or node.outputs[0].is_graph_output():
            continue
        row_table, rows = _table(node.outputs[0]), node.outputs[0]
        index = _one_value(node.inputs[1])
        if row_table is None or not isinstance(index, int) or not -len(row_table) <= index < len(row_table):
            continue
        first = rows.uses()[0].node  # Add(x, rows)
        if first.op_type != "Add" or len(first.outputs[0].uses()) != 1 or first.outputs[0].is_graph_output():
            continue
        x = first.inputs[1 - rows.uses()[0].idx]
        if x is None or x.shape is None or rows.shape is None or x.shape != rows.shape:
            continue
        second, at = first.outputs[0].uses()[0].node, first.outputs[0].uses()[0].idx  # Add(Add(x, rows), positions)
        positions = second.inputs[1 - at] if second.op_type == "Add" else None
        table = _table(positions)
        gather = positions.producer() if table is not None else None
        if gather is None or len(positions.uses()) != 1 or len(gather.inputs[0].uses()) != 1 or table.shape[1] != row_table.shape[1]:
            continue
        name = f"{gather.inputs[0].name}.with_row"
        folded = ir.Value(name=name, const_value=ir.tensor((table + row_table[index]).astype(table.dtype), name=name))
        folded.type, folded.shape = ir.TensorType(folded.const_value.dtype), folded.const_value.shape
        graph.register_initializer(folded)
        gather.replace_input_with(0, folded)
        second.replace_input_with(at, x)
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
