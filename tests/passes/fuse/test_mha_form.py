"""MhaFormPass: the exporter's attention in the form OpenVINO fuses into one MHA kernel, same outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes import Pipeline
from simq.passes.fuse import MhaFormPass
from simq.passes.prune import collect_stats
from simq.passes.quant import calibrate
from simq.targets import TargetRegistry


def _run(model: ir.Model, feed) -> list[np.ndarray]:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _ops(model: ir.Model, op_type: str) -> int:
    return sum(node.op_type == op_type for node in model.graph)


@pytest.fixture(scope="module")
def bert(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    feed = {k: v[:4] for k, v in zoo.data("bert-tiny", "test").inputs.items()}  # ragged masks
    return model, dict(zoo.entry("bert-tiny").signature), feed


def test_guards_and_key_chains_go_and_the_outputs_stay(bert):
    model, _, feed = bert
    assert _ops(model, "IsNaN") == 2  # the exporter's guard, one per layer
    rewritten = MhaFormPass()(model.clone()).model
    assert _ops(rewritten, "IsNaN") == 0
    assert _ops(rewritten, "Transpose") == _ops(model, "Transpose") - 2  # each Kᵀ chain: two Transposes become one
    assert _ops(rewritten, "Reshape") == _ops(model, "Reshape") - 4
    masked = {**feed, "attention_mask": feed["attention_mask"].copy()}
    masked["attention_mask"][0] = 0  # a row with every key masked: a finite mask keeps it finite
    for inputs in (feed, masked):
        np.testing.assert_array_equal(_run(rewritten, inputs)[0], _run(model, inputs)[0])


def test_a_vit_loses_the_zero_bias_it_adds_to_its_scores(zoo):
    """transformers adds a bias built from an all-true mask to a ViT's scores: zero whatever the
    input, it goes, with its Where; the outputs stay."""
    model = sir.load("zoo:digits-vit", zoo=zoo)
    feed = {k: v[:4] for k, v in zoo.data("digits-vit", "test").inputs.items()}
    softmaxes = _ops(model, "Softmax")
    assert _ops(model, "Where") > softmaxes  # a guard per Softmax and the bias
    rewritten = MhaFormPass()(model.clone()).model
    assert _ops(rewritten, "Where") == 0 and _ops(rewritten, "IsNaN") == 0
    assert not any(n.op_type == "Add" and n.outputs[0].uses()[0].node.op_type == "Softmax" for n in rewritten.graph)
    np.testing.assert_allclose(_run(rewritten, feed)[0], _run(model, feed)[0], rtol=1e-5, atol=1e-6)


GUARDED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 8] q, float[1, 2, 8, 4] k, bool[1, 1, 1, 4] m) => (float[1, 2, 4, 4] y) {
    scores = MatMul(q, k)
    bias = Where(m, zero, fill)
    masked = Add(scores, bias)
    p = Softmax<axis = -1>(masked)
    nan = IsNaN(p)
    y = Where(nan, zero, p)
}
"""


@pytest.mark.parametrize("fill, kept", [(-3.4028235e38, False), (-np.inf, True)], ids=["finite", "minus-inf"])
def test_a_guard_that_can_fire_is_kept(fill, kept):
    """A mask of -inf makes a fully masked row NaN, which the guard turns into zeros: kept."""
    proto = onnx.parser.parse_model(GUARDED)
    proto.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"), onnx.numpy_helper.from_array(np.array(fill, np.float32), "fill")])
    model = ir.from_proto(proto)
    rng = np.random.default_rng(0)
    feed = {"q": rng.standard_normal((1, 2, 4, 8), dtype=np.float32), "k": rng.standard_normal((1, 2, 8, 4), dtype=np.float32), "m": np.zeros((1, 1, 1, 4), bool)}
    want = _run(model, feed)[0]
    rewritten = MhaFormPass()(model).model
    assert (_ops(rewritten, "IsNaN") == 1) is kept
    np.testing.assert_array_equal(_run(rewritten, feed)[0], want)


SCALED_BY_INPUT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 8] q, float[1, 2, 8, 4] k, float[1] s) => (float[1, 2, 4, 4] y) {
    scores = MatMul(q, k)
    scaled = Mul(scores, s)
    p = Softmax<axis = -1>(scaled)
    nan = IsNaN(p)
    y = Where(nan, zero, p)
}
"""


def test_a_guard_behind_scores_scaled_by_an_input_is_kept():
    """An input may scale the scores to -inf (or NaN): nothing proves the guard idle."""
    proto = onnx.parser.parse_model(SCALED_BY_INPUT)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    rewritten = MhaFormPass()(ir.from_proto(proto)).model
    assert _ops(rewritten, "IsNaN") == 1


CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 3, 5, 4] k) => (float[2, 3, 4, 5] y) {
    flat = Reshape(k, first)
    swapped = Transpose<perm = [0, 2, 1]>(flat)
    y = Reshape(swapped, second)
}
"""


@pytest.mark.parametrize("first, swap", [([6, 5, 4], True), ([6, 4, 5], False)], ids=["swap", "not-a-swap"])
def test_only_a_chain_that_swaps_the_last_two_axes_is_rewritten(first, swap):
    """[6, 4, 5] reads the same memory as rows of 4 before transposing: the chain reshuffles
    elements, it does not transpose K, and stays."""
    proto = onnx.parser.parse_model(CHAIN)
    proto.graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array(first, np.int64), "first"), onnx.numpy_helper.from_array(np.array([2, 3, 4, 5], np.int64), "second"),
    ])  # fmt: skip
    model = ir.from_proto(proto)
    feed = {"k": np.arange(120, dtype=np.float32).reshape(2, 3, 5, 4)}
    want = _run(model, feed)[0]
    rewritten = MhaFormPass()(model).model
    assert [n.op_type for n in rewritten.graph] == (["Transpose"] if swap else ["Reshape", "Transpose", "Reshape"])
    np.testing.assert_array_equal(_run(rewritten, feed)[0], want)
    assert np.array_equal(want, feed["k"].transpose(0, 1, 3, 2)) is swap


@pytest.mark.openvino
def test_openvino_fuses_each_int8_attention_into_one_kernel(bert, zoo, tmp_path):
    """openvino-cpu's lowering: every layer's attention compiles to one MHA kernel (a snippets
    Subgraph), none without the rewrite, and the model computes what ONNX Runtime computes."""
    ov = pytest.importorskip("openvino")
    model, signature, feed = bert
    structure = sir.analyze(model, signature)
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:2]
    target = TargetRegistry().get("openvino-cpu")
    pipeline = Pipeline(
        model, structure, calibration=calibrate(model, structure, batches), calibration_batches=batches, stats=collect_stats(model, structure, batches),
        supports=target.supports, lowering=target.lowering(signature),
    )  # fmt: skip
    config = {k.name: "int8" for k in pipeline.knobs if "int8" in k.domain} | {f"heads.{structure.layers[0].index}": 1}

    def kernels(built: ir.Model, folder: str) -> list[str]:
        (tmp_path / folder).mkdir()
        artifact = target.lower(built, tmp_path / folder)
        compiled = ov.Core().compile_model(str(artifact.path), "CPU", {k: v for k, v in artifact.settings.items() if k != "device"})
        want = _run(built, feed)[0]
        np.testing.assert_allclose(compiled(feed)[compiled.outputs[0]], want, atol=5e-2 * np.abs(want).max())
        return [str(op.get_rt_info()["layerType"].astype(str)) for op in compiled.get_runtime_model().get_ordered_ops()]

    fused = kernels(pipeline.build(config), "fused")
    plain = kernels(pipeline.replace(lowering=type(pipeline.lowering)(signed_operands=True)).build(config), "plain")
    assert fused.count("Subgraph") >= len(structure.layers) and "Softmax" not in fused
    assert "Softmax" in plain
