"""Batches for tuning: shuffled, length-bucketed, padded only to their longest example."""

from __future__ import annotations

from typing import Any

import numpy as np

from simq.data import Dataset
from simq.ir import TorchSource
from simq.tune._elastic import ElasticNetwork

__all__ = ["accuracy", "batches_of", "feed_of"]


def batches_of(data: Dataset, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (length-bucketed where there is an attention mask)."""
    order = rng.permutation(len(data))
    mask = data.inputs.get("attention_mask")
    if mask is not None:
        lengths = np.asarray(mask).sum(1)
        chunks = [order[i : i + size * 50] for i in range(0, len(order), size * 50)]
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def feed_of(data: Dataset, rows: np.ndarray, torch: Any) -> dict[str, Any]:
    """A batch as tensors, padding cut to the batch's longest example (dynamic padding)."""
    inputs = {k: np.asarray(v[rows]) for k, v in data.inputs.items()}
    mask = inputs.get("attention_mask")
    if mask is not None and mask.ndim == 2:
        longest = max(int(mask.sum(1).max()), 1)
        inputs = {k: v[:, :longest] if v.ndim == 2 and v.shape[1] == mask.shape[1] else v for k, v in inputs.items()}
    return {k: torch.from_numpy(v) for k, v in inputs.items()}


def accuracy(
    source: TorchSource, elastic: ElasticNetwork, config, data: Dataset, torch: Any, size: int = 128, rows: np.ndarray | None = None
) -> float:
    """Accuracy (%) of sub-network `config` on `data` (or on its `rows`), in batches of similar
    lengths so that padding costs little."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    mask = data.inputs.get("attention_mask")
    if mask is not None:
        rows = rows[np.argsort(np.asarray(mask)[rows].sum(1), kind="stable")]
    elastic.set(config)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            logits = source.logits(feed_of(data, batch, torch))
            correct += int((logits.argmax(-1).numpy() == data.labels[batch]).sum())
    return 100.0 * correct / len(rows)
