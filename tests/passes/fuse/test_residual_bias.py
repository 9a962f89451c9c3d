"""ResidualBiasIntoMatMul: a residual Sum's bias moves behind the dynamic-INT8 or INT4-weight
MatMul feeding it, the outputs stay the same, and ONNX Runtime folds it into that kernel; other
MatMuls keep the three-input Sum."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from simq.passes.fuse import ResidualBiasIntoMatMulPass

K = N = 32


def _initializers() -> list[onnx.TensorProto]:
    rng = np.random.default_rng(0)
    int4 = numpy_helper.from_array(rng.integers(-7, 8, (K, N)).astype(ml_dtypes.int4), "w4")
    return [
        numpy_helper.from_array(rng.integers(-100, 100, (K, N)).astype(np.int8), "w8"),
        numpy_helper.from_array(np.zeros(N, np.int8), "wzp"),
        numpy_helper.from_array(np.full(N, 0.01, np.float32), "ws"),
        numpy_helper.from_array(rng.standard_normal((K, N)).astype(np.float32), "w"),
        int4,
        numpy_helper.from_array(np.full((1, N), 0.05, np.float32), "w4s"),
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(rng.standard_normal(N).astype(np.float32), "bias"),
        numpy_helper.from_array(np.ones(N, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(N, np.float32), "beta"),
    ]


def _matmul(form: str) -> list[onnx.NodeProto]:
    """Nodes computing ``mm`` from ``x`` in the form SimQ's quantizer writes for `form`."""
    node = helper.make_node
    if form == "int8dyn":
        return [
            node("DynamicQuantizeLinear", ["x"], ["xq", "xscale", "xzero"]),
            node("MatMulInteger", ["xq", "w8", "xzero", "wzp"], ["integer"]),
            node("Cast", ["integer"], ["as_float"], to=TensorProto.FLOAT),
            node("Mul", ["xscale", "ws"], ["scales"]),
            node("Mul", ["as_float", "scales"], ["mm"]),
        ]
    if form == "int4w":
        return [node("DequantizeLinear", ["w4", "w4s"], ["wd"], axis=0, block_size=K), node("MatMul", ["x", "wd"], ["mm"])]
    if form == "int8":  # static QDQ: ORT would turn MatMul + Add into a float Gemm
        return [
            node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
            node("DequantizeLinear", ["w8", "ws", "wzp"], ["wd"], axis=1),
            node("MatMul", ["xd", "wd"], ["mm"]),
        ]
    return [helper.make_node("MatMul", ["x", "w"], ["mm"])]


def _model(form: str, *, matmul_first: bool = True, also_read: bool = False) -> ir.Model:
    terms = ["mm", "skip"] if matmul_first else ["skip", "mm"]
    nodes = [
        *_matmul(form),
        helper.make_node("Sum", [*terms, "bias"], ["total"]),
        helper.make_node("LayerNormalization", ["total", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, N])]
    if also_read:
        outputs.append(helper.make_tensor_value_info("mm", TensorProto.FLOAT, [1, 4, N]))
    graph = helper.make_graph(
        nodes, "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, K]), helper.make_tensor_value_info("skip", TensorProto.FLOAT, [1, 4, N])],
        outputs, _initializers(),
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    return ir.from_proto(onnx.shape_inference.infer_shapes(proto))


def _session(model: ir.Model, optimized: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if optimized:
        options.optimized_model_filepath = optimized  # what ORT runs after its own fusions
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(model: ir.Model) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((1, 4, K)).astype(np.float32), "skip": rng.standard_normal((1, 4, N)).astype(np.float32)}
    return _session(model).run(None, feed)


@pytest.mark.parametrize("matmul_first", [True, False])
@pytest.mark.parametrize("form, kernel", [("int8dyn", "DynamicQuantizeMatMul"), ("int4w", "MatMulNBits")])
def test_the_bias_moves_into_the_integer_matmul_and_onnx_runtime_folds_it_there(tmp_path, form, kernel, matmul_first):
    expected = _run(_model(form, matmul_first=matmul_first))
    result = ResidualBiasIntoMatMulPass()(_model(form, matmul_first=matmul_first))
    assert result.modified
    total = next(n for n in result.model.graph if n.op_type == "Sum")
    assert len(total.inputs) == 2
    np.testing.assert_allclose(_run(result.model)[0], expected[0], atol=1e-4)
    _session(result.model, str(tmp_path / "optimized.onnx"))
    nodes = onnx.load(tmp_path / "optimized.onnx").graph.node
    assert [n.op_type for n in nodes].count("Add") == 0  # folded into the kernel's bias input
    fused = next(n for n in nodes if n.op_type == kernel)
    assert "bias" in fused.input


@pytest.mark.parametrize("form", ["int8", "fp32"])
def test_static_int8_and_float_matmuls_keep_the_three_input_sum(form):
    result = ResidualBiasIntoMatMulPass()(_model(form))
    assert not result.modified
    assert [len(n.inputs) for n in result.model.graph if n.op_type == "Sum"] == [3]


def test_a_matmul_output_read_elsewhere_keeps_the_three_input_sum():
    result = ResidualBiasIntoMatMulPass()(_model("int8dyn", also_read=True))
    assert not result.modified
