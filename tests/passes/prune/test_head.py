"""The classifier head refit: finding the head, fitting it, setting it, and a pipeline that refits
a pruned candidate's head on its own features of train rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes import Pipeline, defaults, knob_kind
from simq.passes.prune import HeadRows, SetHeadPass, collect_stats, find_head, fit_head
from simq.passes.prune.head import STRENGTHS, _strength, features_of
from simq.passes.quant import calibrate


def _logits(model: ir.Model, feeds) -> np.ndarray:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, dict(feed))[0] for feed in feeds])


def _linear(op: str) -> ir.Model:
    """x [batch, 4] -> logits [batch, 3] by a Gemm (transB) or a MatMul + Add."""
    rng = np.random.default_rng(0)
    x = ir.Value(name="x", shape=ir.Shape(["batch", 4]), type=ir.TensorType(ir.DataType.FLOAT))
    w = rng.normal(size=(3, 4) if op == "Gemm" else (4, 3)).astype(np.float32)
    weight = ir.Value(name="w", shape=ir.Shape(w.shape), type=ir.TensorType(ir.DataType.FLOAT), const_value=ir.tensor(w, name="w"))
    bias = ir.Value(name="b", shape=ir.Shape([3]), type=ir.TensorType(ir.DataType.FLOAT), const_value=ir.tensor(np.zeros(3, np.float32), name="b"))
    if op == "Gemm":
        nodes = [ir.node("Gemm", [x, weight, bias], attributes={"transB": 1}, name="head")]
    else:
        product = ir.node("MatMul", [x, weight], name="head")
        nodes = [product, ir.node("Add", [product.outputs[0], bias], name="bias")]
    nodes[-1].outputs[0].name = "logits"
    nodes[-1].outputs[0].shape, nodes[-1].outputs[0].dtype = ir.Shape(["batch", 3]), ir.DataType.FLOAT
    graph = ir.Graph([x], [nodes[-1].outputs[0]], nodes=nodes, initializers=[weight, bias], opset_imports={"": 17})
    return ir.Model(graph, ir_version=8)


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_a_refit_head_is_found_fitted_and_set(op):
    model = _linear(op)
    head = find_head(model)
    assert head is not None and head.features == "x" and head.weight == "w" and head.bias == "b"
    assert head.transposed == (op == "Gemm")
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 4))
    labels = (features @ rng.normal(size=(4, 3))).argmax(-1)  # a linear rule
    weight, bias = fit_head(features, labels, 3)
    before = model.graph.initializers["w"].const_value.numpy().copy()
    refit = SetHeadPass(weight, bias)(model.clone()).model
    logits = _logits(refit, [{"x": features.astype(np.float32)}])
    assert np.allclose(logits, features @ weight + bias, atol=1e-4)
    assert np.mean(logits.argmax(-1) == labels) > 0.9  # the head was random; the refit learns the rule
    assert np.array_equal(model.graph.initializers["w"].const_value.numpy(), before)  # the original keeps its head


def test_a_two_class_refit_scores_both_classes():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 5))
    labels = (features[:, 2] > 0).astype(np.int64)
    weight, bias = fit_head(features, labels, 2)
    assert weight.shape == (5, 2) and bias.shape == (2,)
    assert np.mean((features @ weight + bias).argmax(-1) == labels) > 0.9


def test_the_strength_follows_the_rows_noise_regularised_hard_clean_signal_hardly():
    rng = np.random.default_rng(4)
    noise = rng.normal(size=(300, 200))  # many features, labels unrelated to them
    assert _strength(noise, rng.integers(0, 3, size=300), True) == STRENGTHS[0]
    clean = rng.normal(size=(300, 3))  # few features, labels a linear function of them
    assert _strength(clean, clean.argmax(-1), True) >= 1.0


def test_a_feature_that_barely_varies_gets_no_outsized_weight():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(300, 4))
    features[:, 3] = 0.5 + 1e-9 * rng.normal(size=300)  # what pruning can leave: a constant up to rounding
    labels = (features[:, :3] @ rng.normal(size=(3, 3))).argmax(-1)
    weight, bias = fit_head(features, labels, 3)
    assert np.abs(weight).max() < 100
    elsewhere = features.copy()
    elsewhere[:, 3] += 1e-3  # a little off on other rows must not flip the predictions
    assert np.array_equal((features @ weight + bias).argmax(-1), (elsewhere @ weight + bias).argmax(-1))


def test_no_refit_without_a_linear_head_or_with_a_class_too_rare():
    model = _linear("Gemm")
    relu = ir.node("Relu", [model.graph.outputs[0]])
    model.graph.append(relu)
    model.graph.outputs[0] = relu.outputs[0]
    assert find_head(model) is None
    assert fit_head(np.zeros((10, 2)), np.array([0] * 9 + [1]), 2) is None  # one row of class 1: no 3-fold CV


def test_a_pruned_candidate_gets_a_head_fit_to_its_own_features(zoo):
    name = "digits-vit"
    model = sir.load(f"zoo:{name}", zoo=zoo)
    structure = sir.analyze(model, dict(zoo.entry(name).signature))
    batches = [x for x, _ in zoo.data(name, "calibration").batches(16)][:2]
    train = [(x, y) for x, y in zoo.data(name, "train").batches(64)]
    rows = HeadRows([x for x, _ in train], np.concatenate([y for _, y in train]))
    kwargs = dict(calibration=calibrate(model, structure, batches), stats=collect_stats(model, structure, batches))
    refitting = Pipeline(model, structure, head_rows=rows, **kwargs)
    plain = refitting.replace(head_rows=None)  # the same pipeline without the refit
    assert refitting.head is not None and plain.head is None
    assert plain.knobs == refitting.knobs and plain.stats is refitting.stats and plain.calibration is refitting.calibration
    with pytest.raises(TypeError, match="head_row"):
        refitting.replace(head_row=None)
    config = defaults(refitting.knobs)
    config.update({k.name: min(k.domain) for k in refitting.knobs if knob_kind(k.name) == "ffn"})  # the narrowest FFN
    config.update({k.name: "int8dyn" for k in refitting.knobs if k.name.startswith("quant.") and "int8dyn" in k.domain})
    with_refit, without = refitting.build(config), plain.build(config)
    # The same network up to the head: equal features, different head weights.
    assert np.allclose(features_of(with_refit, refitting.head, rows), features_of(without, refitting.head, rows), atol=1e-5)
    accuracy = {m: np.mean(_logits(b, rows.batches).argmax(-1) == rows.labels) for m, b in (("refit", with_refit), ("plain", without))}
    assert accuracy["refit"] >= accuracy["plain"]
    assert not np.allclose(_logits(with_refit, rows.batches[:1]), _logits(without, rows.batches[:1]))
    # An unpruned candidate keeps the trained head: it is the same model either way.
    unpruned = defaults(refitting.knobs)
    assert np.array_equal(_logits(refitting.build(unpruned), rows.batches[:1]), _logits(plain.build(unpruned), rows.batches[:1]))


def test_compile_refits_heads_on_the_train_split_unless_told_not_to(zoo):
    from simq.search import JobSpec, prepare_job
    from simq.search._job import HEAD_ROWS

    spec = JobSpec("zoo:digits-cnn", cache_dir=zoo.cache_dir, baselines=False)
    on = prepare_job(spec, zoo).job.pipeline
    assert on.head is not None
    assert len(on.head_rows.labels) == min(HEAD_ROWS, len(zoo.data("digits-cnn", "train")))
    assert prepare_job(dataclasses.replace(spec, head_refit=False), zoo).job.pipeline.head is None
