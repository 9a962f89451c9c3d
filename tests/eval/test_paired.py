"""Drops judged paired on the same examples: estimate, interval, one-sided bound, and what a split
of a given size can resolve."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from simq.eval import DEFAULT_CONFIDENCE, default_confidence, paired_drop, resolvable_drop


def test_a_paired_drop_is_the_mean_difference_with_a_t_bound():
    rng = np.random.default_rng(0)
    reference = 100.0 * (rng.random(1000) < 0.7)
    model = reference.copy()
    flipped = rng.choice(1000, 60, replace=False)
    model[flipped] = 100.0 - model[flipped]
    drop = paired_drop(reference, model, 0.9)
    d = reference - model
    se = d.std(ddof=1) / np.sqrt(1000)
    assert drop.estimate == pytest.approx(d.mean())
    assert drop.bound == pytest.approx(d.mean() + stats.t.ppf(0.9, 999) * se)
    assert drop.low < drop.estimate < drop.high and drop.examples == 1000
    assert drop.within(drop.bound) and not drop.within(drop.bound - 0.01)


def test_identical_models_drop_nothing_and_unpaired_scores_fall_back_to_the_estimate():
    same = np.array([100.0, 0.0, 100.0])
    drop = paired_drop(same, same)
    assert (drop.estimate, drop.low, drop.high, drop.bound) == (0.0, 0.0, 0.0, 0.0)
    unpaired = paired_drop(None, same, estimate=0.7)
    assert (unpaired.bound, unpaired.examples) == (0.7, 0)
    with pytest.raises(ValueError):
        paired_drop(same, same[:2])


def test_larger_splits_resolve_smaller_drops():
    margins = [resolvable_drop(n, 0.9) for n in (256, 512, 2048, 8192)]
    assert margins == sorted(margins, reverse=True)
    assert margins[1] == pytest.approx(2 * margins[2], rel=1e-6)  # the margin shrinks with the square root
    assert resolvable_drop(1) == float("inf")


def test_the_default_confidence_is_lower_only_on_a_split_large_enough_to_keep_the_promise():
    assert default_confidence(None) == default_confidence(512) == default_confidence(1023) == DEFAULT_CONFIDENCE == 0.9
    assert default_confidence(1024) == default_confidence(2047) == 0.8
    assert default_confidence(2048) == default_confidence(4500) == 0.7
    # what the lower confidence still adds on a large split is less than 0.9 adds on the largest small one
    assert resolvable_drop(1024, 0.8) < resolvable_drop(1023, 0.9)
