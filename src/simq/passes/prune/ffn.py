"""PruneFFNPass: keep k intermediate neurons of each transformer FFN."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import onnx_ir as ir

from simq.ir import RemovableBlock, Structure
from simq.passes._knobs import Knob, ffn_knob
from simq.passes.prune._common import (
    Narrowing,
    WidthPass,
    dropped_layers,
    grid,
    keep_indices,
    slice_linear_inputs,
    slice_linear_outputs,
)
from simq.passes.prune._stats import Importance, Seen, Tap, weight_in_out

__all__ = ["PruneFFNPass"]


class PruneFFNPass(WidthPass):
    """Keeps the `ffn.<layer>` most important neurons of each FFN.

    Changes: the up projection's weight columns and bias entries, and the down projection's
    weight rows; with ``reconstruct``, the down projection's kept rows and bias are refit by
    least squares so the block reproduces its unpruned output on calibration data.

    Options as in `WidthPass`.
    """

    kind = "ffn"

    @staticmethod
    def importance(structure: Structure, graph: ir.Graph) -> Importance | None:
        return _FfnImportance(structure, graph) if structure.layers else None

    @staticmethod
    def knobs(structure: Structure) -> list[Knob]:
        return [
            Knob(ffn_knob(layer.index), grid(layer.ffn.width), layer.ffn.width, f"FFN neurons kept in layer {layer.index}")
            for layer in structure.layers
        ]

    @staticmethod
    def within(structure: Structure, block: RemovableBlock) -> list[str]:
        return [ffn_knob(block.layer)] if block.layer is not None else []

    @staticmethod
    def narrowing(structure: Structure, config: Mapping[str, Hashable]) -> list[Narrowing]:
        dropped = dropped_layers(structure, config)
        cuts = []
        for layer in structure.layers:
            k = config.get(ffn_knob(layer.index), layer.ffn.width)
            if k != layer.ffn.width and layer.index not in dropped:
                cuts += [*Narrowing.outputs(layer.ffn.up, k), *Narrowing.inputs(layer.ffn.down, k)]
        return cuts

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        dropped = dropped_layers(self.structure, self.config)
        modified = False
        for layer in self.structure.layers:
            ffn = layer.ffn
            k = self.config.get(ffn_knob(layer.index), ffn.width)
            if k == ffn.width or layer.index in dropped:
                continue
            keep = keep_indices(self._importance(layer.index), ffn.width, k, self.order)
            slice_linear_outputs(graph, ffn.up, keep)
            gram = self.stats.grams[ffn.down.node] if self.reconstruct else None
            slice_linear_inputs(graph, ffn.down, keep, gram)
            modified = True
        return ir.passes.PassResult(model, modified)


class _FfnImportance(Importance):
    """A neuron's mean absolute activation times the norm of its row of the down projection."""

    def __init__(self, structure: Structure, graph: ir.Graph) -> None:
        super().__init__([Tap(layer.ffn.down.node, layer.ffn.width) for layer in structure.layers])
        self.layers, self.graph = structure.layers, graph

    def scores(self, seen: Seen) -> dict[int, np.ndarray]:
        return {
            layer.index: seen.mean_abs(layer.ffn.down.node) * np.linalg.norm(weight_in_out(self.graph, layer.ffn.down), axis=1)
            for layer in self.layers
        }
