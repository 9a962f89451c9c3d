"""Datasets of zoo models: the `Dataset` type, seeded random inputs and ``.npz`` storage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from simq.data import Dataset
from simq.zoo._spec import Recipe, ZooEntry

__all__ = ["SPLITS", "Dataset", "load_split", "random_dataset", "random_inputs", "save_splits"]

# Sizes of the random splits of random-weight models; index order also seeds them.
SPLITS: Mapping[str, int] = {"calibration": 32, "validation": 32, "test": 64, "train": 256}
_LABELS = "labels"


def random_inputs(
    entry: ZooEntry, n: int, rng: np.random.Generator, vocab_size: int | None = None, eos_token_id: int | None = None
) -> dict[str, np.ndarray]:
    """Draw `n` random examples shaped like `entry`'s signature.

    Float inputs are standard normal (images after the usual normalisation). Text inputs get a
    random length per example, between a quarter of the sequence and all of it, so that attention
    masks are not trivially all ones: ``input_ids`` are uniform in ``[1, vocab_size - 1)`` (0 is
    padding and ``vocab_size - 1`` is left free for an end token), ending with `eos_token_id` when
    given; ``attention_mask`` is 1 up to the length; any other integer input is zero.
    """
    lengths = None
    out: dict[str, np.ndarray] = {}
    for spec in entry.inputs:
        shape = (n, *entry.signature[spec.name][1:])
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            out[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype)
            continue
        if lengths is None:
            seq = shape[-1]
            lengths = rng.integers(max(1, seq // 4), seq, size=n, endpoint=True)
        mask = np.arange(shape[-1]) < lengths[:, None]
        if spec.name == "input_ids":
            if vocab_size is None:
                raise ValueError(f"{entry.name}: random input_ids need the recipe's vocab_size")
            ids = rng.integers(1, vocab_size - 1, size=shape)
            if eos_token_id is not None:
                ids[np.arange(n), lengths - 1] = eos_token_id
            out[spec.name] = np.where(mask, ids, 0).astype(spec.dtype)
        elif spec.name == "attention_mask":
            out[spec.name] = mask.astype(spec.dtype)
        else:
            out[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return out


def random_dataset(recipe: Recipe, split: str) -> Dataset:
    """The seeded random split of a random-weight model; each split has its own stream."""
    rng = np.random.default_rng([recipe.seed, list(SPLITS).index(split)])
    return Dataset(random_inputs(recipe.entry, SPLITS[split], rng, recipe.vocab_size, recipe.eos_token_id))


def save_splits(splits: Mapping[str, Dataset], folder: Path) -> None:
    """Write each split as ``folder/<split>.npz`` (uncompressed), labels under the key ``labels``."""
    for split, dataset in splits.items():
        arrays = dict(dataset.inputs)
        if dataset.labels is not None:
            arrays[_LABELS] = dataset.labels
        np.savez(folder / f"{split}.npz", **arrays)


def load_split(folder: Path, split: str) -> Dataset:
    """Read one split written by `save_splits`."""
    with np.load(folder / f"{split}.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    labels = arrays.pop(_LABELS, None)
    return Dataset(arrays, labels)
