"""OrtFusionPass: ORT's fused transformer kernels on whole and pruned sub-networks, same outputs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes.fuse import OrtFusionPass, attention_mask_index_rules, fusion_record
from simq.passes.fuse import ort_fusion as ort_fusion_module
from simq.passes.prune import PruneOptions, prune


def _run(model: ir.Model, feed) -> list[np.ndarray]:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.fixture(scope="module")
def bert(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    signature = dict(zoo.entry("bert-tiny").signature)
    feed = {k: v[:4] for k, v in zoo.data("bert-tiny", "test").inputs.items()}  # ragged masks
    return model, sir.analyze(model, signature), signature, feed


def _ops(model: ir.Model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("config", [{}, {"heads.0": 1, "ffn.0": 256, "ffn.1": 128}], ids=["whole", "pruned"])
def test_fused_kernels_compute_what_the_graph_did(bert, config):
    model, structure, signature, feed = bert
    before = prune(model.clone(), structure, config, None, PruneOptions(order="first", reconstruct=False))
    fused = OrtFusionPass(signature)(before).model
    ops = _ops(fused)
    assert fusion_record(fused) == {"status": "fused"}
    assert ops.get("Attention") == 2 and ops.get("SkipLayerNormalization", 0) >= 3 and ops.get("BiasGelu") == 2
    attention = [n for n in fused.graph if n.op_type == "Attention"]
    # The form ONNX Runtime quantizes into QAttention: mask_index, no qkv_hidden_sizes, the pruned head count.
    assert all(n.attributes.get_ints("qkv_hidden_sizes") is None and n.inputs[3] is not None for n in attention)
    assert sorted(n.attributes.get_int("num_heads") for n in attention) == sorted(
        config.get(f"heads.{layer.index}", layer.attention.num_heads) for layer in structure.layers
    )
    for want, got in zip(_run(before, feed), _run(fused, feed)):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_fusion_that_breaks_leaves_the_model_unfused_and_says_so(bert, monkeypatch):
    model, _, signature, feed = bert

    def broken(model):
        raise RuntimeError("a rule met a graph it did not expect")

    monkeypatch.setattr(ort_fusion_module, "optimize_for_ort", broken)
    result = OrtFusionPass(signature)(model).model
    record = fusion_record(result)
    assert record["status"] == "unfused" and "did not expect" in record["reason"]
    assert "Attention" not in _ops(result)
    for want, got in zip(_run(model, feed), _run(result, feed)):
        np.testing.assert_array_equal(got, want)


def test_an_attention_bias_that_is_no_padding_mask_stays(bert):
    """Rewriting to mask_index is only right for a key padding mask of a 0/1 input."""
    model, _, signature, feed = bert
    fused = OrtFusionPass(signature)(model).model
    attention = next(n for n in fused.graph if n.op_type == "Attention")
    # Put back an additive bias, this time a constant (e.g. a learned relative-position bias).
    bias = ir.Value(name="learned_bias", const_value=ir.tensor(np.zeros((1, 1, 32, 32), np.float32)))
    fused.graph.register_initializer(bias)
    inputs = list(attention.inputs) + [None] * (6 - len(attention.inputs))
    inputs[3], inputs[5] = None, bias
    replacement = ir.node("Attention", inputs, {a.name: a.value for a in attention.attributes.values()}, domain="com.microsoft")
    ir.convenience.replace_nodes_and_values(fused.graph, attention, [attention], [replacement], attention.outputs, replacement.outputs)
    assert attention_mask_index_rules().apply_to_model(fused) == 0
