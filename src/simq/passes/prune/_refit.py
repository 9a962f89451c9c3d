"""Least-squares reconstruction of a projection after some of its inputs were pruned."""

from __future__ import annotations

import numpy as np

__all__ = ["RIDGE", "refit"]

#: Ridge strength relative to the mean diagonal of the Gram matrix.
RIDGE = 1e-3


def refit(
    gram: np.ndarray, keep: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, cross: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Refit ``y = x @ weight + bias`` to use only the inputs `keep`, in closed form.

    Minimises ``|| x[:, keep] @ W' + b' - (x @ weight + bias) ||^2`` over the calibration inputs
    `x`, known only through their Gram matrix, so the pruned projection reproduces the unpruned
    one's output as well as it can (ridge-regularised, with λ = `RIDGE` x mean diagonal). With
    `cross`, the target is another output ``t`` instead, known through ``[x, 1]^T t``.

    Args:
        gram: ``[x, 1]^T [x, 1]`` over calibration rows, shape ``(n + 1, n + 1)``; the last
            row/column belongs to the constant 1.
        keep: Indices of the inputs kept, ascending.
        weight: ``(n, out)``, inputs on axis 0.
        bias: ``(out,)`` or None; with None the refit has no bias either.
        cross: ``[x, 1]^T t`` over the same rows, shape ``(n + 1, out)``, for a target ``t``
            other than the projection's own output.

    Returns:
        The new ``(len(keep), out)`` weight and ``(out,)`` bias (None if `bias` was None).
    """
    n = weight.shape[0]
    rows = np.append(keep, n) if bias is not None else np.asarray(keep)
    lhs = gram[np.ix_(rows, rows)].astype(np.float64)
    if cross is None:  # the target is the unpruned output: [x, 1]^T (x @ weight + bias), kept rows only
        target = np.vstack([weight, bias[None, :]]).astype(np.float64) if bias is not None else weight.astype(np.float64)
        rhs = gram[np.ix_(rows, np.arange(len(target)))].astype(np.float64) @ target
    else:
        rhs = cross[rows].astype(np.float64)
    ridge = RIDGE * float(np.mean(np.diag(lhs)[: len(keep)]))
    lhs[np.arange(len(keep)), np.arange(len(keep))] += ridge
    solution = np.linalg.solve(lhs, rhs)
    if bias is None:
        return solution.astype(weight.dtype), None
    return solution[:-1].astype(weight.dtype), solution[-1].astype(bias.dtype)
