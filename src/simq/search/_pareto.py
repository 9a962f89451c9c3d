"""Pareto fronts and hypervolume, over objectives in minimisation form."""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

__all__ = ["hypervolume", "pareto_front"]


def pareto_front(f: np.ndarray, feasible: np.ndarray | None = None) -> list[int]:
    """Indices of the non-dominated feasible rows of `f`; of rows with equal values, the first."""
    rows = [i for i in range(len(f)) if feasible is None or feasible[i]]
    if not rows:
        return []
    front = NonDominatedSorting().do(f[rows], only_non_dominated_front=True)
    chosen, seen = [], set()
    for i in sorted(rows[j] for j in front):
        key = tuple(np.round(f[i], 12))
        if key not in seen:
            seen.add(key)
            chosen.append(i)
    return chosen


def hypervolume(f: np.ndarray, reference_point: np.ndarray) -> float:
    """The volume dominated by the rows of `f` and bounded by `reference_point` (0 if none is better)."""
    inside = f[np.all(f < reference_point, axis=1)] if len(f) else f
    return float(HV(ref_point=reference_point)(inside)) if len(inside) else 0.0
