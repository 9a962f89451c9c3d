"""PruneFFNPass: keep k intermediate neurons of each transformer FFN; with reconstruction, its
down projection also bridges the layers dropped after it."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from simq.ir import RemovableBlock, Structure, TransformerLayer
from simq.passes._edit import array_of, set_input
from simq.passes._knobs import Knob, ffn_knob
from simq.passes.prune._common import (
    Narrowing,
    WidthPass,
    dropped_layers,
    grid,
    in_parts,
    keep_indices,
    slice_linear_inputs,
    slice_linear_outputs,
)
from simq.passes.prune._stats import Importance, Seen, Tap, weight_in_out

__all__ = ["BRIDGED_LAYERS", "PruneFFNPass"]

#: The longest run of dropped layers a refit bridges (each length costs the statistics one cross
#: product per layer: 4.7 MB for a MiniLM layer, 19 MB for a BERT-base one).
BRIDGED_LAYERS = 2


class PruneFFNPass(WidthPass):
    """Keeps the `ffn.<layer>` most important neurons of each FFN.

    Changes: the up projection's weight columns and bias entries (in both halves of a gated
    one, and the sizes its Split is given), and the down projection's weight rows; with
    ``reconstruct``, the down projection's kept rows and bias are refit by least squares so the
    block reproduces its unpruned output on calibration data. When the
    layers right after it are dropped (at most `BRIDGED_LAYERS` of them), the refit instead makes
    the layer's output reproduce the last dropped layer's output, whatever its width: the kept
    layers then see the residual stream they were trained on (docs/BRIDGE.md: minilm-tweets in
    INT8 with two middle layers dropped, 2 to 3 points more accuracy on validation and on test;
    with one dropped, no change the splits can resolve).

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
                cuts += [*Narrowing.outputs(layer.ffn.up, k * layer.ffn.up_parts), *Narrowing.inputs(layer.ffn.down, k)]
        return cuts

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        dropped = dropped_layers(self.structure, self.config)
        following = _successors(self.structure)
        modified = False
        for layer in self.structure.layers:
            ffn = layer.ffn
            k = self.config.get(ffn_knob(layer.index), ffn.width)
            cross = self._bridge(layer.index, dropped, following)
            if layer.index in dropped or (k == ffn.width and cross is None):
                continue
            keep = keep_indices(self._importance(layer.index), ffn.width, k, self.order)
            if k != ffn.width:
                slice_linear_outputs(graph, ffn.up, in_parts(keep, ffn.width, ffn.up_parts))
                if ffn.gated:
                    _halve(graph, graph.node(ffn.activation[0]), k)
            gram = self.stats.grams[ffn.down.node] if self.reconstruct else None
            slice_linear_inputs(graph, ffn.down, keep, gram, cross)
            modified = True
        return ir.passes.PassResult(model, modified)

    def _bridge(self, layer: int, dropped: set[int], following: Mapping[int, int]) -> np.ndarray | None:
        """With reconstruction, the statistics that refit `layer` toward the output of the run of
        dropped layers right after it (None: nothing dropped after it, or no statistics for
        that run)."""
        if not self.reconstruct or layer in dropped:
            return None
        last, after = None, following.get(layer)
        while after is not None and after in dropped:
            last, after = after, following.get(after)
        return self.stats.crosses.get(bridge_key(layer, last)) if last is not None else None


def _halve(graph: ir.Graph, split: ir.Node, k: int) -> None:
    """A gated FFN's Split given explicit sizes now cuts its narrowed input into halves of `k`."""
    if len(split.inputs) > 1 and split.inputs[1] is not None:
        set_input(graph, split, 1, np.array([k, k], np.int64))
    elif "split" in split.attributes:  # before opset 13
        split.attributes["split"] = ir.AttrInt64s("split", [k, k])


def bridge_key(before: int, last: int) -> str:
    """`PruningStats.crosses` name of the refit of layer `before` across layers up to `last`."""
    return f"ffn.bridge.{before}.{last}"


def _successors(structure: Structure) -> dict[int, int]:
    """Each layer's index -> the index of the layer reading its output."""
    by_input = {layer.input: layer.index for layer in structure.layers}
    return {layer.index: by_input[layer.output] for layer in structure.layers if layer.output in by_input}


@dataclass(frozen=True)
class _Stream:
    """Where a layer's FFN meets the residual stream: ``out = norm(a + down(g))``, where `norm`
    is the layer normalisation after the sum (post-norm; None: the sum is the output).

    Attributes:
        g, a, total: The down projection's input, the residual input of the sum, the sum.
        scale, shift, epsilon: The post-norm's parameters (None for a pre-norm layer).
    """

    g: str
    a: str
    total: str
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    epsilon: float = 1e-5

    def target(self, rows: Mapping[str, np.ndarray], out: np.ndarray) -> np.ndarray:
        """What ``down(g)`` must be for the layer to output `out` (rows of both, float64)."""
        if self.scale is None:
            return out - rows[self.a]
        total = rows[self.total]
        mean = total.mean(1, keepdims=True)
        std = np.sqrt(total.var(1, keepdims=True) + self.epsilon)
        scale = np.where(np.abs(self.scale) > 1e-8, self.scale, 1e-8)
        # The sum whose normalisation gives `out`, with the statistics the original sum had.
        return (out - self.shift) / scale * std + mean - rows[self.a]


def _stream(graph: ir.Graph, layer: TransformerLayer) -> _Stream | None:
    """How `layer`'s FFN output reaches its output (the residual sum and the normalization after
    it that the analysis found), or None where that is not the layer's output, the projection's
    output is scaled on its way to the sum, or the norm is not a LayerNormalization over the last
    axis with a constant scale."""
    ffn = layer.ffn
    if ffn.residual_add is None or ffn.input is None or ffn.output != layer.output:
        return None
    add = graph.node(ffn.residual_add)
    if graph.node(ffn.down.bias_node or ffn.down.node).outputs[0] not in add.inputs:
        return None  # a layer scale (or a reshape) between the projection and the sum
    g, total = graph.node(ffn.down.node).inputs[0].name, add.outputs[0].name
    if total == ffn.output:  # pre-norm: the sum is the output
        return _Stream(g, ffn.input, total)
    node = add.outputs[0].uses()[0].node  # post-norm: the analysis found this norm, the sum's only reader
    if node.op_type != "LayerNormalization" or node.attributes.get_int("axis", -1) != -1:
        return None
    params = [v if v is not None and v.const_value is not None else None for v in node.inputs[1:3]]
    if not params or params[0] is None:
        return None
    scale = array_of(params[0]).astype(np.float64)
    shift = array_of(params[1]).astype(np.float64) if len(params) > 1 and params[1] is not None else np.zeros_like(scale)
    return _Stream(g, ffn.input, total, scale, shift, node.attributes.get_float("epsilon", 1e-5))


class _FfnImportance(Importance):
    """A neuron's mean absolute activation times the norm of its row of the down projection; and
    the cross products that let a layer's down projection bridge dropped layers after it."""

    def __init__(self, structure: Structure, graph: ir.Graph) -> None:
        super().__init__([Tap(layer.ffn.down.node, layer.ffn.width) for layer in structure.layers])
        self.layers, self.graph = structure.layers, graph
        following, output = _successors(structure), {layer.index: layer.output for layer in structure.layers}
        #: Layer -> where its FFN meets the stream, and the layers it may bridge to.
        self.bridges: dict[int, tuple[_Stream, list[int]]] = {}
        for layer in structure.layers:
            stream = _stream(graph, layer)
            ends, after = [], following.get(layer.index)
            while stream is not None and after is not None and len(ends) < BRIDGED_LAYERS:
                ends.append(after)
                after = following.get(after)
            if ends:
                self.bridges[layer.index] = (stream, ends)
        self.values = list(dict.fromkeys(
            name for stream, ends in self.bridges.values() for name in (stream.g, stream.a, stream.total, *(output[j] for j in ends))
        ))  # fmt: skip
        self._output = output
        self._crosses: dict[str, np.ndarray] = {}

    def add_values(self, rows: Mapping[str, np.ndarray]) -> None:
        rows = {name: r.astype(np.float64) for name, r in rows.items()}
        for before, (stream, ends) in self.bridges.items():
            x = np.hstack([rows[stream.g], np.ones((len(rows[stream.g]), 1))])
            for last in ends:
                key = bridge_key(before, last)
                cross = x.T @ stream.target(rows, rows[self._output[last]])
                self._crosses[key] = self._crosses[key] + cross if key in self._crosses else cross

    def crosses(self) -> dict[str, np.ndarray]:
        return {key: cross.astype(np.float32) for key, cross in self._crosses.items()}  # half the memory, summed in float64

    def scores(self, seen: Seen) -> dict[int, np.ndarray]:
        return {
            layer.index: seen.mean_abs(layer.ffn.down.node) * np.linalg.norm(weight_in_out(self.graph, layer.ffn.down), axis=1)
            for layer in self.layers
        }
