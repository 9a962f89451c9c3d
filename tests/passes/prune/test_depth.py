from __future__ import annotations

import numpy as np
import pytest

import simq.ir as sir
from simq.passes.prune import DropBlocksPass, PruneOptions, prune


def test_dropping_the_last_layer_keeps_the_output_name(prepared):
    p = prepared("bert-tiny")
    last = p.structure.removable_blocks[-1]
    pruned = prune(p.fresh(), p.structure, {f"depth.{last.index}": True})
    assert [v.name for v in pruned.graph.outputs] == [v.name for v in p.fresh().graph.outputs]
    after = sir.analyze(pruned, p.signature)
    assert len(after.layers) == 1
    # Expected: the output is the first layer's output of the original model.
    first_output = p.structure.layers[0].output
    original = p.fresh()
    value = next(o for n in original.graph for o in n.outputs if o.name == first_output)
    original.graph.outputs[0] = value
    np.testing.assert_allclose(p.run(pruned)[0], p.run(original)[0], atol=1e-6)


def test_dropping_identity_blocks_of_a_resnet(prepared):
    p = prepared("resnet-tiny")
    blocks = p.structure.removable_blocks
    pruned = prune(p.fresh(), p.structure, {f"depth.{b.index}": True for b in blocks})
    before, after = p.structure.op_counts["Conv"], sir.analyze(pruned, p.signature).op_counts["Conv"]
    assert before - after == 2 * len(blocks)
    assert sir.analyze(pruned, p.signature).removable_blocks == ()


def test_knobs_name_every_block(prepared):
    knobs = DropBlocksPass.knobs(prepared("clip-tiny").structure)
    assert [k.domain for k in knobs] == [(False, True)] * 4


@pytest.mark.parametrize("name", ["bert-tiny", "vit-tiny"])  # post-norm and pre-norm layers
def test_reconstruction_bridges_a_dropped_layer(prepared, name):
    # With reconstruction, the layer before a dropped one is refit to output what the dropped
    # layer did: the model's output moves much less than when the layer is simply cut out.
    p = prepared(name)
    last = next(b for b in p.structure.removable_blocks if b.layer == p.structure.layers[-1].index)
    config = {f"depth.{last.index}": True}
    original = p.run(p.fresh())[0]
    errors = {
        reconstruct: float(np.abs(p.run(prune(p.fresh(), p.structure, config, p.stats, PruneOptions(reconstruct=reconstruct)))[0] - original).mean())
        for reconstruct in (False, True)
    }
    assert errors[True] < 0.5 * errors[False], errors


def test_bridging_keeps_the_width_the_config_asks_for(prepared):
    # The layer before the dropped one is refit across it at its pruned width.
    p = prepared("bert-tiny")
    first, last = p.structure.layers[0], p.structure.layers[-1]
    block = next(b for b in p.structure.removable_blocks if b.layer == last.index)
    width = first.ffn.width // 2
    pruned = prune(p.fresh(), p.structure, {f"depth.{block.index}": True, f"ffn.{first.index}": width}, p.stats, PruneOptions(reconstruct=True))
    after = sir.analyze(pruned, p.signature)
    assert [layer.ffn.width for layer in after.layers] == [width]
    assert np.isfinite(p.run(pruned)[0]).all()
