from __future__ import annotations

import numpy as np

import simq.ir as sir
from simq.passes.prune import PruneHeadsPass, PruneOptions, prune

from ._equivalence import zero_along


def test_dropping_a_head_equals_silencing_its_values(prepared):
    """Expected: the original model with head 1's value projection zeroed in layer 0."""
    p = prepared("bert-tiny")
    a = p.structure.layers[0].attention
    pruned = prune(p.fresh(), p.structure, {"heads.0": 1}, options=PruneOptions(order="first"))

    expected = p.fresh()
    silenced = np.arange(a.head_size, 2 * a.head_size)
    zero_along(expected, a.v.weight, 1, silenced)
    zero_along(expected, a.v.bias, 0, silenced)
    np.testing.assert_allclose(p.run(pruned)[0], p.run(expected)[0], atol=1e-5)

    layer = sir.analyze(pruned, p.signature).layers[0]
    assert (layer.attention.num_heads, layer.attention.q.out_features) == (1, a.head_size)


def test_importance_keeps_the_most_important_heads(prepared):
    p = prepared("vit-tiny")
    importance = p.stats.importance("heads", 0)
    best = int(np.argmax(importance))
    a = p.structure.layers[0].attention
    pruned = prune(p.fresh(), p.structure, {"heads.0": 1}, p.stats)
    q = pruned.graph.node(a.q.node).inputs[1].const_value.numpy()
    original = p.fresh().graph.initializers[a.q.weight].const_value.numpy()
    np.testing.assert_array_equal(q, original[:, best * a.head_size : (best + 1) * a.head_size])


def test_head_count_constants_are_rewritten(prepared):
    """vit-tiny's head split reshapes spell out the head count (its sequence length is fixed)."""
    p = prepared("vit-tiny")
    a = p.structure.layers[1].attention
    pruned = prune(p.fresh(), p.structure, {"heads.1": 1}, p.stats)
    for name in a.head_reshapes:
        shape = pruned.graph.node(name).inputs[1].const_value.numpy()
        assert a.num_heads not in shape[2:3] and 1 in shape


def test_knobs(prepared):
    knobs = PruneHeadsPass.knobs(prepared("clip-tiny").structure)
    assert [k.name for k in knobs] == [f"heads.{i}" for i in range(4)]
    assert all(k.domain == (1, 2) and k.default == 2 for k in knobs)
