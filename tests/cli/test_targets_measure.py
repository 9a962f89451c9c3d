from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from simq.cli import main

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8] x) => (float[N, 4] y) {
    y = MatMul(x, w)
}
"""


@pytest.fixture
def model_file(tmp_path):
    proto = onnx.parser.parse_model(MODEL)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((8, 4), np.float32), "w"))
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    return path


def test_targets_lists_the_built_ins(capsys):
    assert main(["targets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"ort-cpu", "openvino-cpu"} <= set(rows)
    assert rows["ort-cpu"]["precisions"]["MatMul"] == ["fp32", "int8dyn", "int8", "int4w"]
    assert rows["ort-cpu"]["precisions"]["Attention"] == ["fp32", "int8dyn"]
    assert rows["ort-cpu"]["precisions"]["whole model"] == ["fp32"]
    assert rows["ort-cpu"]["fingerprint"]["runtime"] == "onnxruntime"


def test_measure_reports_median_and_spread(model_file, capsys):
    assert main(["measure", str(model_file), "--repeats", "5", "--warmup", "1", "--input-shape", "x=3x8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["repeats"] == 5 and result["median_ms"] > 0 and result["inputs"] == {"x": [3, 8]}
    assert result["fingerprint"]["target"] == "ort-cpu"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["measure", "{m}", "--target", "tpu"], "unknown target"),
        (["measure", "{m}", "--repeats", "0"], "--repeats"),
        (["measure", "missing.onnx"], "does not exist"),
    ],
)
def test_measure_errors(argv, message, model_file, capsys):
    assert main([a.replace("{m}", str(model_file)) for a in argv]) == 2
    assert message in capsys.readouterr().err
