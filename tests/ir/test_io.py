from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.errors import InvalidArgumentError, ModelLoadError
from simq.ir import _io

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 300] y) {
    y = MatMul(x, w)
}
"""


# Big enough (4.8 kB) that onnx_ir moves it to external data rather than keeping it inline.
_WEIGHT = np.arange(1200, dtype=np.float32).reshape(4, 300) / 1200


def _model() -> ir.Model:
    proto = onnx.parser.parse_model(MODEL)
    w = onnx.numpy_helper.from_array(_WEIGHT, "w")
    proto.graph.initializer.append(w)
    return ir.from_proto(proto)


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_save_and_load_roundtrip(tmp_path):
    path = sir.save(_model(), tmp_path / "m.onnx")
    loaded = sir.load(path)
    assert loaded.graph.node(0).op_type == "MatMul"
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(_run(path, x), x @ _WEIGHT)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # nothing staged is left behind


def test_external_data_is_written_and_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "_EXTERNAL_DATA_THRESHOLD", 0)
    path = sir.save(_model(), tmp_path / "m.onnx")
    data = tmp_path / "m.onnx.data"
    assert data.is_file()
    np.testing.assert_array_equal(sir.load(path).graph.initializers["w"].const_value.numpy(), _WEIGHT)
    data.unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        sir.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        sir.load(tmp_path / "nope.onnx")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage that is not a protobuf" * 10)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        sir.load(bad)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        sir.load(tmp_path)


def test_zoo_source_needs_a_zoo():
    with pytest.raises(InvalidArgumentError, match="zoo"):
        sir.load("zoo:bert-tiny")
