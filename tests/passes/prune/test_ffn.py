from __future__ import annotations

import numpy as np

import simq.ir as sir
from simq.passes.prune import PruneFFNPass, PruneOptions, prune

from ._equivalence import zero_along


def test_dropping_neurons_equals_silencing_them(prepared):
    """Expected: the original with the down projection's rows of the pruned neurons zeroed."""
    p = prepared("bert-tiny")
    ffn = p.structure.layers[1].ffn
    pruned = prune(p.fresh(), p.structure, {"ffn.1": 128}, p.stats)

    keep = np.sort(np.argsort(-p.stats.importance("ffn", 1), kind="stable")[:128])
    expected = p.fresh()
    zero_along(expected, ffn.down.weight, 0, np.setdiff1d(np.arange(ffn.width), keep))
    np.testing.assert_allclose(p.run(pruned)[0], p.run(expected)[0], atol=1e-5)
    assert sir.analyze(pruned, p.signature).layers[1].ffn.width == 128


def test_reconstruction_reduces_the_block_error(prepared):
    """On its own calibration data the refit FFN is closer to the unpruned output."""
    p = prepared("digits-vit")
    errors = {}
    for reconstruct in (False, True):
        pruned = prune(p.fresh(), p.structure, {f"ffn.{i}": 32 for i in range(4)}, p.stats, PruneOptions(reconstruct=reconstruct))
        errors[reconstruct] = float(np.abs(p.run(pruned)[0] - p.run(p.fresh())[0]).mean())
    assert errors[True] < errors[False]


def test_knob_grid_is_eighths_of_the_width(prepared):
    (knob, *_) = PruneFFNPass.knobs(prepared("bert-tiny").structure)
    assert knob.domain == (64, 128, 192, 256, 320, 384, 448, 512) and knob.default == 512
