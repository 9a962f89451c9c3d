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


def _embeddings(token_types_input: bool) -> onnx.ModelProto:
    """BERT's embeddings as a dynamo export writes them: word rows, token-type rows (from a buffer
    of zeros expanded to the input's shape, or from an input), position rows (an arange sliced
    to the sequence), summed in that order."""
    rng = np.random.default_rng(0)
    h, helper = onnx.helper, onnx.numpy_helper
    tables = {name: rng.standard_normal((rows, 4)).astype(np.float32) for name, rows in (("words", 6), ("types", 2), ("positions", 8))}
    constants = {"buffer": np.zeros((1, 8), np.int64), "arange": np.arange(8, dtype=np.int64)[None], "zero": np.array([0]), "one": np.array([1])}
    nodes = [
        h.make_node("Shape", ["ids"], ["shape"]),
        h.make_node("Shape", ["ids"], ["length"], start=1, end=2),
        h.make_node("Slice", ["arange", "zero", "length", "one", "one"], ["position_ids"]),
        h.make_node("Gather", ["words", "ids"], ["w"]),
        h.make_node("Gather", ["positions", "position_ids"], ["p"]),
    ]
    if not token_types_input:
        nodes += [
            h.make_node("GatherElements", ["buffer", "position_ids"], ["buffered"], axis=1),
            h.make_node("Expand", ["buffered", "shape"], ["type_ids"]),
        ]
    nodes += [h.make_node("Gather", ["types", "type_ids"], ["t"]), h.make_node("Add", ["w", "t"], ["wt"]), h.make_node("Add", ["wt", "p"], ["y"])]
    inputs = [h.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["B", "L"])]
    if token_types_input:
        inputs.append(h.make_tensor_value_info("type_ids", onnx.TensorProto.INT64, ["B", "L"]))
    graph = h.make_graph(
        nodes, "embeddings", inputs, [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["B", "L", 4])],
        [helper.from_array(v, k) for k, v in {**tables, **constants}.items()],
        value_info=[h.make_tensor_value_info(v, onnx.TensorProto.FLOAT, ["B", "L", 4]) for v in ("w", "t")],
    )  # fmt: skip
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _run(proto: onnx.ModelProto, feed: dict) -> np.ndarray:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_token_type_rows_every_position_reads_are_folded_into_the_position_table():
    proto = _embeddings(token_types_input=False)
    feed = {"ids": np.array([[1, 5, 2], [0, 3, 4]], np.int64)}
    model = sir.cleanup(ir.from_proto(proto))
    ops = [n.op_type for n in model.graph]
    assert ops.count("Gather") == 2 and ops.count("Add") == 1 and "Expand" not in ops  # word and position rows, one sum
    assert "types" not in model.graph.initializers
    np.testing.assert_allclose(_run(ir.to_proto(model), feed), _run(proto, feed), rtol=1e-6, atol=1e-6)


def test_token_types_a_user_feeds_are_left_alone():
    proto = _embeddings(token_types_input=True)
    feed = {"ids": np.array([[1, 5, 2]], np.int64), "type_ids": np.array([[0, 1, 1]], np.int64)}
    model = sir.cleanup(ir.from_proto(proto))
    assert [n.op_type for n in model.graph].count("Gather") == 3
    np.testing.assert_allclose(_run(ir.to_proto(model), feed), _run(proto, feed), rtol=1e-6, atol=1e-6)
