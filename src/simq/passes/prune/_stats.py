"""Calibration statistics for pruning, collected once per model through ONNX Runtime.

For every prunable unit an importance score (activation magnitude times the weight norm of
what it feeds), and for every projection that consumes pruned units the Gram matrix of its
inputs, which is all a least-squares refit needs. Any config is then applied without running
the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from simq.ir import Linear, Structure
from simq.passes._taps import tapped_runs

__all__ = ["PruningStats", "collect_stats", "weight_in_out"]


@dataclass(frozen=True)
class PruningStats:
    """Importance of every prunable unit, and Gram matrices for reconstruction.

    Attributes:
        ffn: Layer index -> importance of each FFN neuron.
        heads: Layer index -> importance of each attention head.
        channels: Channel group index -> importance of each channel.
        grams: Consumer node -> ``[x, 1]^T [x, 1]`` over its calibration inputs (float64).
        rows: How many activation rows (tokens, pixels) the statistics saw.
    """

    ffn: Mapping[int, np.ndarray]
    heads: Mapping[int, np.ndarray]
    channels: Mapping[int, np.ndarray]
    grams: Mapping[str, np.ndarray]
    rows: int

    def save(self, path: Path) -> None:
        arrays = {f"ffn/{k}": v for k, v in self.ffn.items()}
        arrays |= {f"heads/{k}": v for k, v in self.heads.items()}
        arrays |= {f"channels/{k}": v for k, v in self.channels.items()}
        arrays |= {f"grams/{k}": v for k, v in self.grams.items()}
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(tmp, rows=np.array(self.rows), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PruningStats:
        parts: dict[str, dict] = {"ffn": {}, "heads": {}, "channels": {}, "grams": {}}
        with np.load(path) as data:
            for key in data.files:
                if key == "rows":
                    continue
                kind, name = key.split("/", 1)
                parts[kind][name if kind == "grams" else int(name)] = data[key]
            rows = int(data["rows"])
        return cls(parts["ffn"], parts["heads"], parts["channels"], parts["grams"], rows)


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


def _conv_in_norms(w: np.ndarray) -> np.ndarray:
    """L2 norm of each input channel's slice of a weight read by a consumer."""
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=tuple(i for i in range(w.ndim) if i != 1)))


def collect_stats(
    model: ir.Model,
    structure: Structure,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    grams: bool = True,
    on_batch: Callable[[], None] | None = None,
) -> PruningStats:
    """Run calibration batches through ONNX Runtime once and collect importance (and Grams).

    Args:
        model: The unpruned, cleaned-up model `structure` was computed on.
        batches: Input feeds; an ``attention_mask`` input, if present, drops padding tokens.
        grams: Also collect the Gram matrices that reconstruction needs.
        on_batch: Called after each batch (for progress bars).
    """
    graph = model.graph
    taps: dict[str, _Accumulator] = {}
    head_norms: dict[int, np.ndarray] = {}
    consumers: dict[str, str] = {}  # consumer node -> the value it reads

    def tap(node_name: str, features: int, gram: bool) -> None:
        value = graph.node(node_name).inputs[0]
        consumers[node_name] = value.name
        if value.name not in taps:
            taps[value.name] = _Accumulator(features, gram and grams)

    for layer in structure.layers:
        tap(layer.ffn.down.node, layer.ffn.width, True)
        tap(layer.attention.out.node, layer.attention.out.in_features, True)
        head_norms[layer.index] = np.zeros(layer.attention.num_heads)
    for group in structure.channel_groups:
        if group.prunable:
            for use in group.uses:
                if use.role == "consumer":
                    node = graph.node(use.node)
                    refittable = node.op_type in ("Gemm", "MatMul") or (
                        node.op_type == "Conv" and all(d == 1 for d in node.inputs[1].const_value.shape[2:])
                    )
                    tap(use.node, group.size, refittable)

    tap_names = list(taps)
    out_weights = {layer.index: weight_in_out(graph, layer.attention.out) for layer in structure.layers}

    for feed, results in tapped_runs(model, tap_names, batches):
        mask = feed.get("attention_mask")
        for name, acc in taps.items():
            acc.add(_rows(results[name], mask))
        for layer in structure.layers:
            a = layer.attention
            context = _rows(results[graph.node(a.out.node).inputs[0].name], mask)
            w = out_weights[layer.index]
            for h in range(a.num_heads):
                cols = slice(h * a.head_size, (h + 1) * a.head_size)
                head_norms[layer.index][h] += np.linalg.norm(context[:, cols] @ w[cols], axis=-1).sum()
        if on_batch is not None:
            on_batch()

    ffn, heads, channels, gram_of = {}, {}, {}, {}
    for layer in structure.layers:
        down = layer.ffn.down
        acc = taps[consumers[down.node]]
        ffn[layer.index] = acc.mean_abs * np.linalg.norm(weight_in_out(graph, down), axis=1)
        heads[layer.index] = head_norms[layer.index] / max(taps[consumers[layer.attention.out.node]].rows, 1)
    for group in structure.channel_groups:
        if not group.prunable:
            continue
        score = np.zeros(group.size)
        for use in group.uses:
            if use.role == "consumer":
                w = graph.initializers[use.tensor].const_value.numpy()
                w = np.moveaxis(w, use.axis, 1) if w.ndim > 1 else w
                score += taps[consumers[use.node]].mean_abs * _conv_in_norms(w)
        channels[group.index] = score
    for node_name, value_name in consumers.items():
        if taps[value_name].gram is not None:
            gram_of[node_name] = taps[value_name].gram
    rows = max((acc.rows for acc in taps.values()), default=0)
    return PruningStats(ffn, heads, channels, gram_of, rows)
