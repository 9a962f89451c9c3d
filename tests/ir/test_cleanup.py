from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

import simq.ir as sir

# Before: an Identity, a constant subexpression (c = a + b) and a dead branch.
BEFORE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    a = Constant <value = float[4] {1, 2, 3, 4}> ()
    b = Constant <value = float[4] {10, 20, 30, 40}> ()
    c = Add(a, b)
    i = Identity(x)
    dead = Relu(i)
    y = Mul(i, c)
}
"""


def test_cleanup_folds_removes_and_keeps_numerics():
    proto = onnx.parser.parse_model(BEFORE)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    model = sir.cleanup(ir.from_proto(proto))

    assert [n.op_type for n in model.graph] == ["Mul"]  # Expected: y = Mul(x, c) with c folded
    folded = model.graph.node(0).inputs[1]
    np.testing.assert_array_equal(folded.const_value.numpy(), [11, 22, 33, 44])
    assert all(n.name for n in model.graph) and len({n.name for n in model.graph}) == len(model.graph)
    out = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, expected)
