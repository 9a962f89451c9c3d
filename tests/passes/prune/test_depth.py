from __future__ import annotations

import numpy as np

import simq.ir as sir
from simq.passes.prune import DropBlocksPass, prune


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
