"""DropBlocksPass: remove whole residual blocks (transformer layers, ResNet identity blocks)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import onnx_ir as ir

from simq.ir import RemovableBlock, Structure
from simq.passes._knobs import Knob, depth_knob
from simq.passes.prune._common import Narrowing

__all__ = ["DropBlocksPass"]


class DropBlocksPass(ir.passes.InPlacePass):
    """Drops every removable block whose `depth.<block>` knob is True.

    Changes: every consumer of the block's output (and the graph output, if it is one, under
    its old name) reads the block's input instead; the block's nodes become dead and the
    cleanup pipeline removes them.
    """

    def __init__(self, structure: Structure, config: Mapping[str, Hashable]) -> None:
        super().__init__()
        self.structure, self.config = structure, config

    @staticmethod
    def knobs(structure: Structure) -> list[Knob]:
        return [
            Knob(depth_knob(b.index), (False, True), False, f"drop {b.kind} {b.layer if b.layer is not None else b.index}")
            for b in structure.removable_blocks
        ]

    @staticmethod
    def within(structure: Structure, block: RemovableBlock) -> list[str]:
        return []

    @staticmethod
    def narrowing(structure: Structure, config: Mapping[str, Hashable]) -> list[Narrowing]:
        """Every weight of a dropped block goes away (the cleanup removes it)."""
        return [
            Narrowing(tensor, 0, 0, 1) for b in structure.removable_blocks if config.get(depth_knob(b.index), False) for tensor in b.weights
        ]  # fmt: skip

    def _dropped(self) -> list:
        return [b for b in self.structure.removable_blocks if self.config.get(depth_knob(b.index), False)]

    def requires(self, model: ir.Model) -> None:
        """Each block to drop is still in the graph: its input and output values exist."""
        names = {v.name for v in model.graph.inputs} | {v.name for n in model.graph for v in n.outputs}
        missing = [b.index for b in self._dropped() if b.input not in names or b.output not in names]
        if missing:
            raise ir.passes.PreconditionError(f"DropBlocksPass: blocks {missing} are not in the graph (dropped already?).")

    def ensures(self, model: ir.Model) -> None:
        """Nothing reads a dropped block's output any more."""
        outputs = {b.output for b in self._dropped()}
        readers = [n.name for n in model.graph for v in n.inputs if v is not None and v.name in outputs]
        if readers:
            raise ir.passes.PostconditionError(f"DropBlocksPass: {readers[0]} still reads a dropped block's output.")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        values = {v.name: v for v in graph.inputs} | {v.name: v for n in graph for v in n.outputs}
        modified = False
        # Later blocks first: a dropped block's input may be an earlier dropped block's output.
        for block in sorted(self._dropped(), key=lambda b: -b.index):
            old, new = values[block.output], values[block.input]
            if old.is_graph_output():
                # Keep the model's output name: route the input through an Identity named like it.
                identity = ir.node("Identity", [new])
                graph.append(identity)
                name = old.name
                old.name = f"{name}.dropped"
                identity.outputs[0].name = name
                identity.outputs[0].dtype, identity.outputs[0].shape = old.dtype, old.shape
                new = identity.outputs[0]
            ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
            values[block.output] = new
            modified = True
        return ir.passes.PassResult(model, modified)
