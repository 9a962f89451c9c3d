from __future__ import annotations

import numpy as np

from simq.passes.prune import PruneChannelsPass, PruneOptions, prune

from ._equivalence import zero_along


def _silenced(p, group, keep):
    """Expected: the original with every consumer's input slice of the pruned channels zeroed."""
    model = p.fresh()
    drop = np.setdiff1d(np.arange(group.size), keep)
    for use in group.uses:
        if use.role == "consumer":
            zero_along(model, use.tensor, use.axis, drop)
    return model


def test_residual_group_is_pruned_together(prepared):
    p = prepared("resnet-tiny")
    group = p.structure.channel_groups[0]  # the stem and stage 1's residual stream
    assert len(group.producers) > 1
    pruned = prune(p.fresh(), p.structure, {f"channels.{group.index}": 8}, p.stats)
    keep = np.sort(np.argsort(-p.stats.importance("channels", group.index), kind="stable")[:8])
    np.testing.assert_allclose(p.run(pruned)[0], p.run(_silenced(p, group, keep))[0], atol=1e-4)
    for producer in group.producers:
        weight = pruned.graph.node(producer).inputs[1]
        assert weight.const_value.shape[0] == 8


def test_channels_feeding_a_classifier(prepared):
    """The last group is read by the Gemm through a pooled Reshape with a constant width."""
    p = prepared("digits-cnn")
    group = next(g for g in reversed(p.structure.channel_groups) if g.prunable)
    k = group.size // 2
    pruned = prune(p.fresh(), p.structure, {f"channels.{group.index}": k}, p.stats)
    keep = np.sort(np.argsort(-p.stats.importance("channels", group.index), kind="stable")[:k])
    np.testing.assert_allclose(p.run(pruned)[0], p.run(_silenced(p, group, keep))[0], atol=1e-4)


def test_reconstruction_refits_a_gemm_consumer(prepared):
    p = prepared("digits-resnet")
    group = next(g for g in reversed(p.structure.channel_groups) if g.prunable)
    config = {f"channels.{group.index}": group.size // 4}
    reference = p.run(p.fresh())[0]
    errors = [
        float(np.abs(p.run(prune(p.fresh(), p.structure, config, p.stats, PruneOptions(reconstruct=r)))[0] - reference).mean())
        for r in (False, True)
    ]
    assert errors[1] < errors[0]


def test_knobs_only_for_prunable_groups(prepared):
    s = prepared("resnet-tiny").structure
    names = [k.name for k in PruneChannelsPass.knobs(s)]
    assert names == [f"channels.{g.index}" for g in s.channel_groups if g.prunable]
