"""What the pruning passes share: choosing units, reading configs, slicing projections."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import META_KEPT, Linear, RemovableBlock, Structure
from simq.passes._edit import array_of, input_index, set_input
from simq.passes._knobs import depth_knob
from simq.passes.prune._refit import refit
from simq.passes.prune._stats import Importance, PruningStats

__all__ = ["Narrowing", "Order", "WidthPass", "bias_site", "depth_knob", "dropped_layers", "grid", "in_parts", "keep_indices", "slice_linear_inputs", "slice_linear_outputs"]

#: ``"importance"`` keeps the top-k units by calibration importance; ``"first"`` keeps the first
#: k, for supernets trained to be elastic, whose units are already ordered by importance.
Order = Literal["importance", "first"]


@dataclass(frozen=True)
class Narrowing:
    """One parameter tensor a pruning pass narrows: `kept` of its `total` entries along `axis`
    (`kept` 0: the tensor goes away with its block).

    A pass's narrowings are its size estimate (`predicted_params` multiplies them out, without
    building a graph) and its contract: before it runs, `node` reads the tensor at its full
    width; after, at `kept` (`WidthPass.requires`/`ensures`). `node` None: not checked.
    """

    tensor: str
    axis: int
    kept: int
    total: int
    node: str | None = None

    @classmethod
    def outputs(cls, linear: Linear, kept: int) -> tuple[Narrowing, ...]:
        """A projection keeping `kept` of its output features: weight columns and bias."""
        axis = 1 if linear.weight_layout == "in_out" else 0
        weight = cls(linear.weight, axis, kept, linear.out_features, linear.node)
        if linear.bias is None:
            return (weight,)
        return weight, cls(linear.bias, 0, kept, linear.out_features, linear.bias_node or linear.node)

    @classmethod
    def inputs(cls, linear: Linear, kept: int) -> tuple[Narrowing, ...]:
        """A projection reading `kept` of its input features: weight rows."""
        return (cls(linear.weight, 0 if linear.weight_layout == "in_out" else 1, kept, linear.in_features, linear.node),)

    def width(self, nodes: Mapping[str, ir.Node]) -> int | None:
        """The tensor's size along `axis` as `node` reads it in a graph (None: not read there).
        A sliced copy of a shared tensor is named after it (``<tensor>.<n>``, `set_input`)."""
        node = nodes.get(self.node) if self.node is not None else None
        for value in node.inputs if node is not None else ():
            if value is not None and (value.name == self.tensor or value.name.startswith(f"{self.tensor}.")) and value.shape is not None:
                return int(value.shape[self.axis])
        return None


def check_widths(model: ir.Model, narrowings: Iterable[Narrowing], after: bool, what: str) -> None:
    """Raise unless every checked narrowing reads its full width (before) or its kept one (after).

    Raises:
        ir.passes.PreconditionError / PostconditionError: Naming the first tensor that does not.
    """
    nodes = {node.name: node for node in model.graph}
    for n in narrowings:
        if n.node is None:
            continue
        want = n.kept if after else n.total
        got = n.width(nodes)
        if got != want:
            error = ir.passes.PostconditionError if after else ir.passes.PreconditionError
            found = f"has {got}" if got is not None else "is not read there (a fused or quantized model?)"
            raise error(f"{what}: {n.tensor} of {n.node} should have {want} entries on axis {n.axis} {'after' if after else 'before'} pruning; it {found}.")


def grid(size: int, steps: int = 8) -> tuple[int, ...]:
    """Keep counts offered to the search: `steps` even fractions of `size`, ascending."""
    return tuple(sorted({max(1, round(size * i / steps)) for i in range(1, steps + 1)}))


def keep_indices(importance: np.ndarray | None, size: int, k: int, order: Order) -> np.ndarray:
    """Ascending indices of the `k` units to keep out of `size`."""
    if order == "first":
        return np.arange(k)
    if importance is None:
        raise InvalidConfigError("importance-ordered pruning needs calibration statistics; pass stats= or use order='first'.")
    return np.sort(np.argsort(-np.asarray(importance), kind="stable")[:k])


def in_parts(keep: np.ndarray, width: int, parts: int = 1) -> np.ndarray:
    """The output features of a projection whose output holds `parts` blocks of `width` side
    by side (a fused Q/K/V projection: 3; a gated FFN's up projection: 2) that keep, in every
    block, the features `keep`."""
    return np.concatenate([np.asarray(keep) + i * width for i in range(parts)])


def dropped_layers(structure: Structure, config: Mapping[str, Hashable]) -> set[int]:
    """Transformer layers the config drops (their width knobs are then moot)."""
    return {
        b.layer for b in structure.removable_blocks if b.layer is not None and config.get(depth_knob(b.index), False)
    }


def bias_site(graph: ir.Graph, linear: Linear) -> tuple[ir.Node, int] | None:
    """The node and input position that hold the projection's bias."""
    if linear.bias is None:
        return None
    node = graph.node(linear.bias_node or linear.node)
    return node, input_index(node, linear.bias)


def slice_linear_outputs(graph: ir.Graph, linear: Linear, keep: np.ndarray) -> None:
    """Keep only output features `keep` of a projection (weight columns and bias)."""
    node = graph.node(linear.node)
    axis = 1 if linear.weight_layout == "in_out" else 0
    set_input(graph, node, 1, np.take(array_of(node.inputs[1]), keep, axis=axis))
    site = bias_site(graph, linear)
    if site is not None:
        bias_node, index = site
        set_input(graph, bias_node, index, array_of(bias_node.inputs[index])[keep])


def slice_linear_inputs(
    graph: ir.Graph, linear: Linear, keep: np.ndarray, gram: np.ndarray | None = None, cross: np.ndarray | None = None
) -> None:
    """Keep only input features `keep` of a projection; with `gram`, refit it by least squares
    (toward its own output, or toward the target `cross` gives: see `refit`).

    The narrowed activation remembers which original channels it kept (`META_KEPT`).
    """
    node = graph.node(linear.node)
    node.inputs[0].meta[META_KEPT] = keep
    w = array_of(node.inputs[1])
    w_io = w if linear.weight_layout == "in_out" else w.T
    site = bias_site(graph, linear)
    if gram is None:
        new_w = w_io[keep]
    else:
        bias = array_of(site[0].inputs[site[1]]) if site is not None else None
        new_w, new_b = refit(gram, keep, w_io, bias, cross)
        if site is not None:
            set_input(graph, site[0], site[1], new_b)
    set_input(graph, node, 1, new_w if linear.weight_layout == "in_out" else new_w.T)


class WidthPass(ir.passes.InPlacePass):
    """Shared constructor of the passes that keep the k most important units of something.

    Args:
        structure: The analysis of the unpruned model.
        config: Knob values; the pass reads its own, and the depth knobs to skip dropped layers.
        stats: Calibration statistics (importance, and Grams for ``reconstruct``).
        order: Which units to keep (see `Order`).
        reconstruct: Refit the consuming projections by least squares.
    """

    def __init__(
        self,
        structure: Structure,
        config: Mapping[str, Hashable],
        stats: PruningStats | None = None,
        *,
        order: Order = "importance",
        reconstruct: bool = False,
    ) -> None:
        super().__init__()
        if reconstruct and stats is None:
            raise InvalidConfigError("reconstruction needs calibration statistics; pass stats=.")
        self.structure, self.config, self.stats = structure, config, stats
        self.order, self.reconstruct = order, reconstruct

    #: Names this pass's scores in `PruningStats` (and its statistics' part of the pipeline).
    kind: str = ""

    @staticmethod
    def importance(structure: Structure, graph: ir.Graph) -> Importance | None:
        """How this pass scores its units from calibration data (`collect_stats` runs every
        pass's taps at once; its scores are then `stats.importance(kind, group)`); None: it
        scores nothing and chooses its units itself."""
        return None

    def _importance(self, group: int) -> np.ndarray | None:
        return self.stats.importance(self.kind, group) if self.stats is not None else None

    @staticmethod
    def within(structure: Structure, block: RemovableBlock) -> list[str]:
        """This pass's knobs that mean nothing once `block` is dropped (none by default)."""
        return []

    @staticmethod
    def narrowing(structure: Structure, config: Mapping[str, Hashable]) -> list[Narrowing]:
        """The tensors `config` narrows through this pass (skipping dropped layers)."""
        raise NotImplementedError

    def requires(self, model: ir.Model) -> None:
        """The model is unpruned where this pass cuts: neither fused nor quantized there yet."""
        check_widths(model, self.narrowing(self.structure, self.config), after=False, what=type(self).__name__)

    def ensures(self, model: ir.Model) -> None:
        """Every tensor it cuts has the width the config asked for."""
        check_widths(model, self.narrowing(self.structure, self.config), after=True, what=type(self).__name__)
