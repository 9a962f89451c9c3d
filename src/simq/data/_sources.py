"""Where a job's examples come from: the user's data, a zoo model's own splits, or synthetic inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from simq.data._dataset import Dataset
from simq.data._roles import ROLES
from simq.data._synthetic import synthetic_dataset
from simq.errors import DataError
from simq.ir import InputDomain

__all__ = ["Examples", "SplitExamples", "SyntheticExamples", "content_hashes", "input_contents"]

#: Synthetic examples per role (seeded apart).
SYNTHETIC_SIZES = {"train": 256, "calibration": 128, "validation": 64, "test": 64}


@runtime_checkable
class Examples(Protocol):
    """A job's examples in their roles (``train``, ``calibration``, ``validation``, ``test``)."""

    labelled: bool
    synthetic: bool

    def role(self, role: str) -> Dataset: ...

    def row_hashes(self, role: str) -> list[str]:
        """A hash of each example's content (its text, image or array bytes as given, not the
        model inputs made from it), in role order: what no two roles may share."""
        ...

    def describe(self) -> str: ...


def content_hashes(contents: Iterable[bytes]) -> list[str]:
    """Short content hashes (sha256, 16 hex digits) of examples."""
    return [hashlib.sha256(c).hexdigest()[:16] for c in contents]


def input_contents(data: Dataset) -> list[bytes]:
    """Each example's input arrays as bytes (the content of array data)."""
    names = sorted(data.inputs)
    return [b"".join(np.ascontiguousarray(data.inputs[n][i]).tobytes() for n in names) for i in range(len(data))]


class SplitExamples:
    """Examples already split by role (a zoo model's stored splits), read on demand.

    Args:
        contents: Per role, the examples' raw contents (texts as UTF-8) where the stored inputs
            are not the content (token ids); by default the input arrays are.
    """

    synthetic = False

    def __init__(
        self, read: Mapping[str, object], labelled: bool, description: str, contents: Mapping[str, Callable[[], list[bytes]]] | None = None
    ) -> None:
        self._read, self.labelled, self._description = dict(read), labelled, description
        self._contents = dict(contents or {})
        self._cache: dict[str, Dataset] = {}

    def role(self, role: str) -> Dataset:
        if role not in self._read:
            raise DataError(f"unknown data role {role!r}; roles are {', '.join(ROLES)}.")
        if role not in self._cache:
            self._cache[role] = self._read[role]()
        return self._cache[role]

    def row_hashes(self, role: str) -> list[str]:
        read = self._contents.get(role)
        return content_hashes(read() if read is not None else input_contents(self.role(role)))

    def describe(self) -> str:
        return self._description


class SyntheticExamples:
    """Seeded inputs within what the model takes (no labels): scores are fidelity to FP32."""

    labelled = False
    synthetic = True

    def __init__(self, domains: Sequence[InputDomain], signature: Mapping[str, tuple[int, ...]], seed: int = 0) -> None:
        self.domains, self.signature, self.seed = list(domains), dict(signature), seed

    def role(self, role: str) -> Dataset:
        if role not in SYNTHETIC_SIZES:
            raise DataError(f"unknown data role {role!r}; roles are {', '.join(ROLES)}.")
        return synthetic_dataset(self.domains, self.signature, SYNTHETIC_SIZES[role], self.seed * 10 + ROLES.index(role))

    def row_hashes(self, role: str) -> list[str]:
        return content_hashes(input_contents(self.role(role)))

    def describe(self) -> str:
        sizes = ", ".join(f"{role} {n}" for role, n in SYNTHETIC_SIZES.items())
        return f"no data given: seeded synthetic inputs within the model's input ranges ({sizes}); scores are fidelity to FP32 on them"
