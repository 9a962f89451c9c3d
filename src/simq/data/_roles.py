"""Split roles: what each part of a user's data is for, and carving the roles the data lacks.

| role | what it serves |
|---|---|
| ``train`` | tuning (`simq tune`); never scored |
| ``calibration`` | INT8 ranges, pruning statistics and least-squares refits, the baselines' calibration |
| ``validation`` | the search's score (the accuracy constraint is judged here) |
| ``test`` | the final score of the Pareto set and the baselines |

Named splits take their role from `ROLE_OF_SPLIT`; roles the data does not name are carved,
disjoint, from the unnamed data (a single file) or else from ``train``, with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from simq.errors import DataError

__all__ = ["ROLES", "ROLE_OF_SPLIT", "RolePlan", "assign_roles"]

ROLES = ("train", "calibration", "validation", "test")
#: Split names as data sets spell them -> the role they play.
ROLE_OF_SPLIT: Mapping[str, str] = {
    "train": "train", "training": "train",
    "calibration": "calibration", "calib": "calibration",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}  # fmt: skip
#: Carved shares of the pool (the unnamed data, or train), and their caps. Validation gets the
#: largest share: the accuracy limit is judged paired on it, and its margin shrinks with the
#: square root of its size (`simq.eval.resolvable_drop`; ~4,500 examples resolve half a point).
_CARVE = {"test": (0.2, 3000), "validation": (0.3, 5000), "calibration": (0.1, 256)}
_MIN_EXAMPLES = 8


@dataclass(frozen=True)
class RolePlan:
    """Where each role's examples come from: role -> (split name on disk, row indices)."""

    parts: Mapping[str, tuple[str, np.ndarray]]
    carved: tuple[str, ...]

    def describe(self) -> str:
        """One line: each role with its size, and which were carved."""
        sizes = ", ".join(f"{role} {len(self.parts[role][1])}" for role in ROLES if role in self.parts)
        carved = f" (carved with a fixed seed: {', '.join(self.carved)})" if self.carved else ""
        return f"data splits: {sizes}{carved}"


def assign_roles(split_sizes: Mapping[str, int], seed: int = 0) -> RolePlan:
    """Give every role its examples.

    Args:
        split_sizes: Split name on disk -> its number of examples. ``data`` is the unnamed data.

    Raises:
        DataError: A split name has no role, two splits claim one role, or there are too few
            examples to carve the missing roles.
    """
    parts: dict[str, tuple[str, np.ndarray]] = {}
    pool_name = None
    for name, size in split_sizes.items():
        if name == "data":
            pool_name = name
            continue
        role = ROLE_OF_SPLIT.get(name.lower())
        if role is None:
            raise DataError(f"split {name!r} has no role; name splits train, calibration, validation (or dev) and test.")
        if role in parts:
            raise DataError(f"splits {parts[role][0]!r} and {name!r} both claim the {role} role; keep one.")
        parts[role] = (name, np.arange(size))
    if pool_name is not None and parts:
        raise DataError("the data has named splits and unnamed rows; name every split or none.")
    missing = [role for role in ("test", "validation", "calibration") if role not in parts]
    if pool_name is None and "train" in parts:
        pool_name = parts["train"][0]
    if not missing:
        return RolePlan(parts, ())
    if pool_name is None:
        raise DataError(f"the data has no {' or '.join(missing)} split and no train split to carve it from; add one.")
    n = split_sizes[pool_name]
    if n < _MIN_EXAMPLES:
        raise DataError(f"{pool_name!r} has {n} examples; carving {', '.join(missing)} from it needs at least {_MIN_EXAMPLES}.")
    order = np.random.default_rng(seed).permutation(n)
    start = 0
    for role in missing:
        share, cap = _CARVE[role]
        count = max(1, min(cap, int(round(share * n))))
        parts[role] = (pool_name, np.sort(order[start : start + count]))
        start += count
    rest = np.sort(order[start:])
    if "train" not in parts or parts["train"][0] == pool_name:
        parts["train"] = (pool_name, rest)
    return RolePlan(parts, tuple(missing))
