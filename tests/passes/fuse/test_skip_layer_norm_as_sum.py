"""SkipLayerNormAsSum: a residual layer norm as Sum + LayerNormalization, the same outputs, and a
form ONNX Runtime does not fuse back when it loads the model."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from simq.passes.fuse import SkipLayerNormAsSumPass

BEFORE = """
<ir_version: 9, opset_import: ["" : 17, "com.microsoft" : 1]>
residual (float[2, 5, 8] x, float[2, 5, 8] skip) => (float[2, 5, 8] y, float[2, 5, 8] z) {
    y = com.microsoft.SkipLayerNormalization <epsilon: float = 0.00001> (x, skip, gamma, beta, bias)
    z, mean, inv_std, sum = com.microsoft.SkipLayerNormalization <epsilon: float = 0.00001> (y, skip, gamma, beta)
    unread = Identity (sum)
    read = Identity (unread)
}
"""


def _model(text: str) -> ir.Model:
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name in ("gamma", "beta", "bias"):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), name))
    return ir.from_proto(proto)


def _run(model: ir.Model) -> list[np.ndarray]:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    return session.run(None, {"x": rng.standard_normal((2, 5, 8)).astype(np.float32), "skip": rng.standard_normal((2, 5, 8)).astype(np.float32)})


def test_a_norm_whose_sum_is_not_read_becomes_sum_and_layer_norm_with_the_same_outputs():
    before = _model(BEFORE)
    expected = _run(before)
    after = SkipLayerNormAsSumPass()(_model(BEFORE)).model
    ops = [n.op_type for n in after.graph]
    # The first norm is rewritten (its bias joins the Sum); the second keeps its fused form: its
    # sum output is read.
    assert ops.count("SkipLayerNormalization") == 1 and ops.count("Sum") == 1 and ops.count("LayerNormalization") == 1
    total = next(n for n in after.graph if n.op_type == "Sum")
    assert [v.name for v in total.inputs] == ["x", "skip", "bias"]
    for want, got in zip(expected, _run(after)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnx_runtime_does_not_fuse_the_sum_back(tmp_path):
    after = SkipLayerNormAsSumPass()(_model(BEFORE)).model
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")  # what ORT runs after its own fusions
    ort.InferenceSession(ir.to_proto(after).SerializeToString(), options, providers=["CPUExecutionProvider"])
    kept = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert kept.count("SkipLayerNormalization") == 1 and "LayerNormalization" in kept
