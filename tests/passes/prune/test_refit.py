from __future__ import annotations

import numpy as np

from simq.passes.prune._refit import refit


def test_refit_recovers_a_redundant_input():
    """If a pruned input is a linear mix of kept ones, the refit reproduces the output exactly."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 4))
    x = np.hstack([x, x[:, :1] + 2 * x[:, 1:2]])  # input 4 = x0 + 2 x1
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    augmented = np.hstack([x, np.ones((500, 1))])
    new_w, new_b = refit(augmented.T @ augmented, np.arange(4), w, b)
    refit_error = np.abs(x[:, :4] @ new_w + new_b - (x @ w + b)).max()
    naive_error = np.abs(x[:, :4] @ w[:4] + b - (x @ w + b)).max()
    assert refit_error < 0.05 and naive_error > 1  # exact but for the small ridge


def test_refit_without_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 3))
    augmented = np.hstack([x, np.ones((200, 1))])
    new_w, new_b = refit(augmented.T @ augmented, np.arange(3), np.eye(3), None)
    assert new_b is None
    np.testing.assert_allclose(new_w, np.eye(3), atol=1e-2)
