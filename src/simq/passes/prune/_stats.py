"""Calibration statistics for pruning, collected once per model through ONNX Runtime.

Each pruning pass scores its own units (its `importance`: an `Importance` naming the projections
whose inputs it watches, and how it scores from what they saw); `observe` runs the calibration
batches once with every pass's taps and also keeps, for every tapped projection, the Gram matrix
of its inputs, which is all a least-squares refit needs. Any config is then applied without
running the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from simq.ir import Linear
from simq.passes._taps import tapped_runs

__all__ = ["Importance", "PruningStats", "Seen", "Tap", "observe", "weight_in_out"]


@dataclass(frozen=True)
class PruningStats:
    """Importance of every prunable unit, by pass, and Gram matrices for reconstruction.

    Attributes:
        scores: A pass's `kind` -> its unit group (layer, channel group) -> each unit's score.
        grams: Consumer node -> ``[x, 1]^T [x, 1]`` over its calibration inputs (float64).
        rows: How many activation rows (tokens, pixels) the statistics saw.
        crosses: ``[x, 1]^T t`` of a projection's inputs with a target ``t`` other than its own
            output, named by the pass that collected them (`Importance.crosses`).
    """

    scores: Mapping[str, Mapping[int, np.ndarray]]
    grams: Mapping[str, np.ndarray]
    rows: int
    crosses: Mapping[str, np.ndarray] = field(default_factory=dict)

    def importance(self, kind: str, group: int) -> np.ndarray | None:
        """The scores of `kind`'s units in `group` (None where the pass scores nothing)."""
        return self.scores.get(kind, {}).get(group)


@dataclass(frozen=True)
class Tap:
    """A projection whose input values are watched over the calibration batches.

    Attributes:
        node: The projection (its first input is watched).
        features: Width of that input's last axis (channels for images).
        gram: Keep the Gram matrix of its inputs, for a least-squares refit.
    """

    node: str
    features: int
    gram: bool = True


class Seen:
    """What every tap saw over the batches: mean absolute input per feature, and rows."""

    def __init__(self, accumulators: Mapping[str, _Accumulator]) -> None:
        self._by_node = accumulators

    def mean_abs(self, node: str) -> np.ndarray:
        return self._by_node[node].mean_abs

    def rows(self, node: str) -> int:
        return self._by_node[node].rows


@dataclass
class Importance:
    """How one pruning pass scores its units: the taps it needs, a hook per batch (for scores that
    are not sums of per-feature statistics), and the scores from what was seen.

    Attributes:
        taps: The projections whose inputs the pass watches.
        values: Further activations it reads in every batch (`add_values`), by value name.
    """

    taps: Sequence[Tap] = field(default_factory=list)
    values: Sequence[str] = ()

    def add(self, rows: Mapping[str, np.ndarray]) -> None:
        """One calibration batch: each tapped node's input rows (features last, padding tokens
        left out). Nothing by default."""

    def add_values(self, rows: Mapping[str, np.ndarray]) -> None:
        """One calibration batch: the rows of each of `values`, as `add` gets them. Nothing by
        default."""

    def crosses(self) -> dict[str, np.ndarray]:
        """Statistics for refits toward other targets than a projection's own output (see
        `PruningStats.crosses`); none by default."""
        return {}

    def scores(self, seen: Seen) -> dict[int, np.ndarray]:
        """Each unit group's scores, higher is more important."""
        raise NotImplementedError


def weight_in_out(graph: ir.Graph, linear: Linear) -> np.ndarray:
    """A projection's weight as ``(in, out)``, whatever its stored layout."""
    w = graph.initializers[linear.weight].const_value.numpy()
    return w if linear.weight_layout == "in_out" else w.T


def _rows(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Activation rows with features last: tokens of (B, S, F), pixels of (N, C, H, W)."""
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
    if x.ndim == 3:
        if mask is not None and mask.shape == x.shape[:2]:
            return x[mask.astype(bool)]  # padding tokens say nothing about the model
        return x.reshape(-1, x.shape[-1])
    return x.reshape(-1, x.shape[-1])


class _Accumulator:
    def __init__(self, features: int, gram: bool) -> None:
        self.abs_sum = np.zeros(features)
        self.rows = 0
        self.gram = np.zeros((features + 1, features + 1)) if gram else None

    def add(self, rows: np.ndarray) -> None:
        rows = rows.astype(np.float64)
        self.abs_sum += np.abs(rows).sum(0)
        self.rows += len(rows)
        if self.gram is not None:
            augmented = np.hstack([rows, np.ones((len(rows), 1))])
            self.gram += augmented.T @ augmented

    @property
    def mean_abs(self) -> np.ndarray:
        return self.abs_sum / max(self.rows, 1)


def observe(
    model: ir.Model,
    batches: Iterable[Mapping[str, np.ndarray]],
    importances: Mapping[str, Importance],
    *,
    grams: bool = True,
    on_batch: Callable[[], None] | None = None,
) -> PruningStats:
    """Run calibration batches through ONNX Runtime once with every pass's taps; score.

    Args:
        model: The unpruned, cleaned-up model.
        batches: Input feeds; an ``attention_mask`` input, if present, drops padding tokens.
        importances: Each pass's `Importance`, by its kind.
        grams: Also collect the Gram matrices (and cross products) that reconstruction needs.
        on_batch: Called after each batch (for progress bars).
    """
    graph = model.graph
    taps: dict[str, _Accumulator] = {}  # watched value -> what it saw
    value_of: dict[str, str] = {}  # tapped node -> the value it reads
    for importance in importances.values():
        for tap in importance.taps:
            value = graph.node(tap.node).inputs[0].name
            value_of[tap.node] = value
            if value not in taps:
                taps[value] = _Accumulator(tap.features, tap.gram and grams)
    # Further values serve refits only: read them when Grams are collected.
    extra = [v for importance in importances.values() for v in importance.values] if grams else []
    read = list(dict.fromkeys([*taps, *extra]))
    for feed, results in tapped_runs(model, read, batches):
        mask = feed.get("attention_mask")
        rows = {value: _rows(results[value], mask) for value in read}
        for value, accumulator in taps.items():
            accumulator.add(rows[value])
        by_node = {node: rows[value] for node, value in value_of.items()}
        for importance in importances.values():
            importance.add(by_node)
            if grams and importance.values:
                importance.add_values({value: rows[value] for value in importance.values})
        if on_batch is not None:
            on_batch()
    seen = Seen({node: taps[value] for node, value in value_of.items()})
    scores = {kind: importance.scores(seen) for kind, importance in importances.items()}
    gram_of = {node: taps[value].gram for node, value in value_of.items() if taps[value].gram is not None}
    crosses = {name: cross for importance in importances.values() for name, cross in importance.crosses().items()} if grams else {}
    return PruningStats(scores, gram_of, max((a.rows for a in taps.values()), default=0), crosses)
