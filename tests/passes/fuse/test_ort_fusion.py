"""OrtFusionPass: ORT's fused transformer kernels on whole and pruned sub-networks, same outputs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes.fuse import OrtFusionPass, attention_bias_rules, fusion_record
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
    learned = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    bias = ir.Value(name="learned_bias", const_value=ir.tensor(learned))
    fused.graph.register_initializer(bias)
    inputs = list(attention.inputs) + [None] * (6 - len(attention.inputs))
    inputs[3], inputs[5] = None, bias
    replacement = ir.node("Attention", inputs, {a.name: a.value for a in attention.attributes.values()}, domain="com.microsoft")
    ir.convenience.replace_nodes_and_values(fused.graph, attention, [attention], [replacement], attention.outputs, replacement.outputs)
    assert attention_bias_rules().apply_to_model(fused) == 0


def test_a_bias_that_is_zero_whatever_the_inputs_is_dropped_and_the_attention_quantizes(zoo):
    """ViT has no padding mask, yet its export adds a bias built from the batch size alone (an
    all-true mask made additive): zero for every input, so the fused Attention drops it, and with
    it the one thing that kept ViT's attention out of QAttention."""
    from simq.passes import Lowering, Pipeline
    from simq.passes.quant import calibrate, takes_int8dyn

    model = sir.load("zoo:vit-tiny", zoo=zoo)
    signature = dict(zoo.entry("vit-tiny").signature)
    structure = sir.analyze(model, signature)
    fused = OrtFusionPass(signature)(model).model
    attention = [n for n in fused.graph if n.op_type == "Attention"]
    assert len(attention) == len(structure.layers)
    assert all(len(n.inputs) < 6 or n.inputs[5] is None for n in attention) and all(map(takes_int8dyn, attention))
    # Without the rules (what tools/bench_attention_bias.py times against), the bias stays and so does FP32.
    kept = OrtFusionPass(signature, attention_bias=False)(model).model
    assert not any(takes_int8dyn(n) for n in kept.graph if n.op_type == "Attention")
    feed = {k: v[:3] for k, v in zoo.data("vit-tiny", "test").inputs.items()}  # another batch size than the export's
    for want, got in zip(_run(model, feed), _run(fused, feed)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    batches = [x for x, _ in zoo.data("vit-tiny", "calibration").batches(8)][:1]
    pipeline = Pipeline(model, structure, calibration=calibrate(model, structure, batches), lowering=Lowering(fusions=(OrtFusionPass(signature),)))
    knobs = {k.name: k for k in pipeline.knobs}
    assert all("int8dyn" in knobs[f"quant.attention.{layer.index}"].domain for layer in structure.layers)
    built = pipeline.build({name: "int8dyn" for name, k in knobs.items() if name.startswith("quant.attention.")})
    assert _ops(built).get("QAttention") == len(structure.layers)


def test_a_bias_that_reads_an_input_or_is_not_zero_stays(bert):
    """A mask-like bias built from the batch size but not zero (every key masked), or one that
    reads a model input's values, is no zero bias."""
    from simq.passes.fuse.attention_bias import always_zero

    graph = bert[0].clone().graph
    ids = next(v for v in graph.inputs if v.name == "input_ids")
    shape = ir.node("Shape", [ids])
    full = ir.node("ConstantOfShape", [shape.outputs[0]], {"value": ir.tensor(np.array([-1e4], np.float32))})
    zeros = ir.node("Mul", [ids, ir.Value(name="zero", const_value=ir.tensor(np.array(0, np.int64)))])
    for node in (shape, full, zeros):
        graph.append(node)
    graph.register_initializer(zeros.inputs[1])
    assert not always_zero(full.outputs[0])  # reads only shapes, but is not zero
    assert not always_zero(zeros.outputs[0])  # zero, but reads the input's values


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_a_causal_padding_bias_becomes_mask_index_and_unidirectional_and_quantizes(zoo):
    """CLIP's text tower adds one bias for its causal and padding masks: the fused Attention
    takes the padding mask as mask_index with unidirectional=1, computes the same, and QAttention
    honours it (flipped off, the quantized text tower computes something else)."""
    from simq.passes import Lowering, Pipeline
    from simq.passes.quant import calibrate, takes_int8dyn

    model = sir.load("zoo:clip-tiny", zoo=zoo)
    signature = dict(zoo.entry("clip-tiny").signature)
    structure = sir.analyze(model, signature)
    fused = OrtFusionPass(signature)(model).model
    attention = [n for n in fused.graph if n.op_type == "Attention"]
    causal = [n for n in attention if n.attributes.get_int("unidirectional", 0)]
    assert len(attention) == len(structure.layers) and 0 < len(causal) < len(attention)  # the text tower's, not the vision tower's
    assert all(n.inputs[3] is not None and (len(n.inputs) < 6 or n.inputs[5] is None) for n in causal)
    assert all(map(takes_int8dyn, attention))
    feed = {k: v[:4] for k, v in zoo.data("clip-tiny", "test").inputs.items()}
    assert any(not row.all() for row in feed["attention_mask"])  # ragged: the padding mask matters
    for want, got in zip(_run(model, feed), _run(fused, feed)):
        np.testing.assert_allclose(got, want, atol=1e-4)

    batches = [x for x, _ in zoo.data("clip-tiny", "calibration").batches(8)][:1]
    pipeline = Pipeline(model, structure, calibration=calibrate(model, structure, batches), lowering=Lowering(fusions=(OrtFusionPass(signature),)))
    built = pipeline.build({k.name: "int8dyn" for k in pipeline.knobs if k.name.startswith("quant.attention.")})
    quantized = [n for n in built.graph if n.op_type == "QAttention"]
    assert len(quantized) == len(attention)
    close = _run(built, feed)
    for n in quantized:
        n.attributes.pop("unidirectional", None)
    ignored = _run(built, feed)
    want = _run(model, feed)
    assert all(_cosine(got, w) > 0.99 for got, w in zip(close, want))
    assert min(_cosine(off, w) for off, w in zip(ignored, want)) < 0.99
