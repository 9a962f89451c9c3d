"""`Dataset`: examples as model inputs (batch on axis 0), with their labels if there are any."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from simq.errors import InvalidArgumentError

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Examples for one split, as model inputs.

    Attributes:
        inputs: Every example of every model input, batch on axis 0; the other axes match the
            model's signature.
        labels: The class index of every example, or None when the data has no labels.
    """

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        sizes = {len(a) for a in self.inputs.values()} | ({len(self.labels)} if self.labels is not None else set())
        if len(sizes) > 1:
            raise InvalidArgumentError(
                f"dataset arrays disagree on the number of examples ({sorted(sizes)}); give every array the same length on axis 0."
            )

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values()), ()))

    def batches(self, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        """Yield ``(inputs, labels)`` batches in order; the last one may be smaller.

        Raises:
            InvalidArgumentError: `batch_size` is not positive.
        """
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be at least 1, got {batch_size}; pass a positive batch size.")
        return self._slices(batch_size)

    def _slices(self, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        for start in range(0, len(self), batch_size):
            window = slice(start, start + batch_size)
            labels = self.labels[window] if self.labels is not None else None
            yield {name: array[window] for name, array in self.inputs.items()}, labels


