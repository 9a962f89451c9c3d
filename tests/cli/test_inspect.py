from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from simq.cli import main

CNN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 8, 8] x) => (float[N, 5] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w)
    r = Relu(c)
    p = GlobalAveragePool(r)
    f = Flatten(p)
    y = Gemm <transB = 1> (f, fc)
}
"""


@pytest.fixture
def cnn_file(tmp_path):
    proto = onnx.parser.parse_model(CNN)
    rng = np.random.default_rng(0)
    for name, shape in (("w", (16, 3, 3, 3)), ("fc", (5, 16))):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    path = tmp_path / "cnn.onnx"
    onnx.save(proto, path)
    return path


def test_inspect_json(cnn_file, capsys):
    assert main(["inspect", str(cnn_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["signature"] == {"x": [1, 3, 8, 8]}
    assert data["params"] == 16 * 27 + 5 * 16
    assert data["macs"] == 16 * 64 * 27 + 5 * 16
    assert [g["prunable"] for g in data["channel_groups"]] == [True, False]


def test_inspect_table_and_dot(cnn_file, tmp_path, capsys):
    dot = tmp_path / "g.dot"
    assert main(["inspect", str(cnn_file), "--input-shape", "x=4x3x8x8", "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    assert "x=4x3x8x8" in out and "Channel groups" in out and "Quantizable nodes" in out
    text = dot.read_text()
    assert text.startswith("digraph model {") and text.count("->") == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "missing.onnx"], "does not exist"),
        (["inspect", "zoo:bert-huge"], "unknown zoo model"),
        (["inspect", "{cnn}", "--input-shape", "x=1by3"], "NAME=DIMS"),
        (["inspect", "{cnn}", "--input-shape", "y=1x3"], "inputs are x"),
        (["inspect", "{cnn}", "--input-shape", "x=1x3"], "rank 4"),
        (["inspect", "{cnn}", "--layer", "0"], "--dot"),
        (["inspect", "{cnn}", "--dot", "/nonexistent-dir/g.dot"], "cannot write"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, cnn_file, tmp_path):
    argv = [a.replace("{cnn}", str(cnn_file)) for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "simq", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model" * 50)
    assert main(["inspect", str(bad)]) == 2
    assert "not a valid ONNX model" in capsys.readouterr().err


def test_debug_shows_the_traceback_and_exits_as_without_it(tmp_path, capsys):
    assert main(["--debug", "inspect", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "does not exist" in err


def test_inspect_sensitivity_is_computed_once_and_cached(cnn_file, tmp_path, capsys):
    argv = ["inspect", str(cnn_file), "--json", "--sensitivity", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)["sensitivity"]
    assert len(first) == 2  # the Conv and the Gemm
    assert all(v >= 0 for v in first.values())
    cached = list((tmp_path / "cache" / "sensitivity").glob("*.json"))
    assert len(cached) == 1
    cached[0].write_text(json.dumps({k: 1.0 for k in first}))  # a second run must read the cache
    assert main(argv) == 0
    assert set(json.loads(capsys.readouterr().out)["sensitivity"].values()) == {1.0}


def test_inspect_shows_what_a_compiled_artifact_runs(zoo, tmp_path, capsys):
    import simq.ir as sir
    from simq.passes import Pipeline
    from simq.passes.quant import calibrate
    from simq.targets.ort_cpu import OrtCpuTarget

    model = sir.load("zoo:bert-tiny", zoo=zoo)
    signature = dict(zoo.entry("bert-tiny").signature)
    structure = sir.analyze(model, signature)
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:1]
    target = OrtCpuTarget()
    pipeline = Pipeline(
        model, structure, calibration=calibrate(model, structure, batches), calibration_batches=batches,
        supports=target.supports, lowering=target.lowering(signature),
    )  # fmt: skip
    path = sir.save(pipeline.build({"quant.attention.0": "int8dyn"}), tmp_path / "model.onnx")
    assert main(["inspect", str(path), "--json", "--input-shape", "input_ids=1x32", "--input-shape", "attention_mask=1x32"]) == 0
    lowering = json.loads(capsys.readouterr().out)["lowering"]
    assert lowering["fused_ops"]["QAttention"] == 1 and lowering["fused_ops"]["Attention"] == 1
    assert lowering["precisions"]["Attention int8dyn"] == 1 and lowering["fusion"]["status"] == "fused"
    assert main(["inspect", str(path)]) == 0
    assert "Lowered for a runtime" in capsys.readouterr().out
