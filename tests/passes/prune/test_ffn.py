from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes._edit import constant
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


@pytest.mark.parametrize("sizes", ["counted", "given"])
def test_a_gated_ffn_loses_both_halves_of_a_neuron(modernbert, sizes):
    """ModernBERT's FFN is ``down(gelu(a) * b)`` with ``a, b`` the halves of one projection:
    keeping the first k neurons keeps columns i and width + i of it, and equals the original
    with the down projection's other rows zeroed. Its Split counts two outputs; an exporter may
    give the sizes instead, which then become (k, k)."""
    folder, feed = modernbert

    def load() -> ir.Model:
        model = sir.load(folder, cache_dir=folder.parent / "cache")
        for split in (n for n in model.graph if n.op_type == "Split" and sizes == "given"):
            split.attributes.pop("num_outputs")
            split.resize_inputs(2)
            split.replace_input_with(1, constant(model.graph, f"{split.name}.sizes", np.array([48, 48], np.int64)))
        return model

    signature = {"input_ids": (1, 16), "attention_mask": (1, 16)}
    structure = sir.analyze(load(), signature)
    ffn = structure.layers[1].ffn
    assert [(layer.ffn.width, layer.ffn.gated, layer.ffn.up.out_features) for layer in structure.layers] == [(48, True, 96)] * 3

    def run(m):
        return ort.InferenceSession(ir.to_proto(m).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]

    pruned = prune(load(), structure, {"ffn.1": 18}, options=PruneOptions(order="first"))
    expected = load()
    zero_along(expected, ffn.down.weight, 0, np.arange(18, 48))
    assert np.abs(run(load()) - run(expected)).max() > 1e-2  # the silenced neurons mattered
    np.testing.assert_allclose(run(pruned), run(expected), atol=1e-4)
    assert sir.analyze(pruned, signature).layers[1].ffn.width == 18
