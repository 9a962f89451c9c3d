"""Synthetic inputs for a model without data: seeded, and within what each input takes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from simq.data._dataset import Dataset
from simq.errors import InvalidArgumentError
from simq.ir import InputDomain

__all__ = ["synthetic_dataset", "timing_feed"]


def synthetic_dataset(
    domains: Sequence[InputDomain], signature: Mapping[str, tuple[int, ...]], count: int, seed: int
) -> Dataset:
    """`count` examples shaped like `signature` (batch axis aside) that the model can take.

    Integer inputs that index a table (token ids, segment ids) draw from its rows (ids from 1,
    0 being padding, where the table is larger than two rows); 0/1 masks mark a random length
    between a quarter of the sequence and all of it, and ids past it are padding; other integer
    inputs are 0; floating-point inputs are standard normal (images after normalisation).
    """
    rng = np.random.default_rng(seed)
    lengths = None
    out: dict[str, np.ndarray] = {}
    for spec in domains:
        shape = (count, *signature[spec.name][1:])
        if not spec.is_integer:
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            continue
        if lengths is None and len(shape) >= 2:
            lengths = rng.integers(max(1, shape[-1] // 4), shape[-1], size=count, endpoint=True)
        valid = (np.arange(shape[-1]) < lengths[:, None]) if lengths is not None and len(shape) == 2 else np.ones(shape, bool)
        if spec.high is not None:
            low = 1 if spec.high > 2 else 0
            out[spec.name] = np.where(valid, rng.integers(low, max(spec.high, low + 1), size=shape), 0).astype(spec.dtype)
        elif spec.mask:
            out[spec.name] = valid.astype(spec.dtype)
        else:
            out[spec.name] = np.zeros(shape, spec.dtype)
    return Dataset(out)


def timing_feed(
    inputs: Mapping[str, np.ndarray], domains: Sequence[InputDomain], signature: Mapping[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """Inputs shaped exactly like `signature` (the deployment shape latency is timed at), made
    from real examples: rows repeat to fill the batch; token sequences are cut, or extended by
    repeating their attended tokens, to the signature's length, with every position attended (a
    model deployed at N tokens runs N real tokens). Other axes must already match.

    Raises:
        InvalidArgumentError: An input's other axes differ from the signature's.
    """
    masks = {d.name for d in domains if d.mask}
    tokens = {d.name for d in domains if d.is_integer and not d.mask}
    mask = next((inputs[m] for m in masks if m in inputs and inputs[m].ndim == 2), None)
    feed = {}
    for name, array in inputs.items():
        shape = tuple(signature[name])
        rows = np.resize(array[: shape[0]], (shape[0], *array.shape[1:]))
        if rows.ndim == 2 and name in masks:
            rows = np.ones(shape, rows.dtype)
        elif rows.ndim == 2 and name in tokens and rows.shape[1] != shape[1]:
            valid = rows[:, : max(1, int(mask[0].sum()))] if mask is not None else rows
            rows = np.tile(valid, (1, -(-shape[1] // valid.shape[1])))[:, : shape[1]]
        if rows.shape != shape:
            raise InvalidArgumentError(f"input {name!r} has examples of shape {array.shape[1:]}; they cannot be timed at {shape}.")
        feed[name] = np.ascontiguousarray(rows)
    return feed
