from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import simq.ir as sir
from simq.cli import main
from simq.errors import ArtifactError, MissingDependencyError, UnknownTargetError
from simq.targets import Artifact, Target, TargetRegistry

ROOT = Path(__file__).resolve().parents[2]

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8] x) => (float[N, 4] y) {
    h = MatMul(x, w)
    y = Relu(h)
}
"""


@pytest.fixture
def tiny():
    proto = onnx.parser.parse_model(MODEL)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((8, 4), np.float32), "w"))
    return sir.cleanup(ir.from_proto(proto)), {"x": np.ones((1, 8), np.float32)}


@pytest.mark.parametrize("name", ["ort-cpu", pytest.param("openvino-cpu", marks=pytest.mark.openvino)])
def test_built_in_targets_lower_and_run(name, tiny, tmp_path):
    model, feed = tiny
    target = TargetRegistry().get(name)
    assert isinstance(target, Target)
    artifact = target.lower(model, tmp_path)
    assert all(f.is_file() for f in artifact.files)
    stats = target.measure(artifact, feed, warmup=1, repeats=5)
    assert stats.repeats == 5 and stats.median > 0
    assert target.fingerprint() == target.fingerprint()  # stable across calls
    assert target.supports("MatMul", "int8") and not target.supports("Softmax", "int8")


def test_unknown_target_suggests_a_name():
    with pytest.raises(UnknownTargetError, match="did you mean 'ort-cpu'"):
        TargetRegistry().get("ort_cpu")


def test_target_whose_runtime_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails
    with pytest.raises(MissingDependencyError, match="simq\\[openvino\\]"):
        TargetRegistry().get("openvino-cpu").fingerprint()


@pytest.mark.parametrize("name", ["ort-cpu", pytest.param("openvino-cpu", marks=pytest.mark.openvino)])
def test_rejected_artifact_is_a_clear_error(name, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"definitely not a model")
    target = TargetRegistry().get(name)
    artifact = Artifact(name, bad, bad, (bad,))
    with pytest.raises(ArtifactError, match="rejected") as error:
        target.measure(artifact, {"x": np.ones((1, 8), np.float32)}, warmup=0, repeats=1)
    # the reason, not the native source line it was raised at (OpenVINO leads with those)
    assert not re.search(r"rejected \S+: (Exception from|Check .* failed at)", str(error.value))


def test_plugin_target_is_found_through_its_entry_point_and_compiled_for(tiny, zoo, tmp_path, monkeypatch):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(ROOT / "examples" / "simq-edge-target")],
        check=True, capture_output=True,
    )  # fmt: skip
    registry = TargetRegistry()
    monkeypatch.syspath_prepend(str(site))
    info = registry.available()["edge-cpu"]
    assert info.provider == "simq-edge-target"
    target = registry.get("edge-cpu", threads=4)
    assert target.fingerprint().threads == 1
    model, feed = tiny
    artifact = target.lower(model, tmp_path / "out")
    assert target.measure(artifact, feed, warmup=1, repeats=3).repeats == 3
    out = tmp_path / "compiled"
    args = ["compile", "zoo:digits-cnn", "--cache-dir", str(zoo.cache_dir), "--target", "edge-cpu", "--budget", "2", "--population", "2", "--out", str(out)]
    assert main(args) == 0
    manifests = [json.loads(p.read_text()) for p in out.glob("pareto/*/manifest.json")]
    assert manifests and all(m["fingerprint"]["target"] == "edge-cpu" and m["fingerprint"]["threads"] == 1 for m in manifests)


@pytest.mark.openvino
def test_lowering_for_openvino_starts_no_telemetry(tmp_path):
    """OpenVINO's converter sends telemetry by forking from a thread pool, which deadlocked a compile
    whose main thread was in a BLAS call at that moment; lowering must not go through it."""
    script = f"""
import multiprocessing, threading, time, numpy as np, onnx, onnx_ir as ir, openvino, simq.ir as sir
from simq.targets import TargetRegistry
before = set(threading.enumerate())  # importing openvino alone starts an idle telemetry worker
proto = onnx.parser.parse_model({MODEL!r})
proto.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((8, 4), np.float32), "w"))
TargetRegistry().get("openvino-cpu").lower(sir.cleanup(ir.from_proto(proto)), __import__("pathlib").Path({str(tmp_path)!r}))
time.sleep(0.5)
print(len(set(threading.enumerate()) - before), len(multiprocessing.active_children()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "0"]  # no new thread, no child process


@pytest.mark.openvino
def test_an_openvino_artifact_lowered_twice_has_one_digest(zoo, tmp_path):
    """Timings and per-example scores are kept under the artifact's digest: the same model lowered
    again in the same process (as the final pass does) must be found under it. OpenVINO numbers
    the nodes it makes with a process-wide counter, which changed the IR on every save."""
    pytest.importorskip("openvino")
    target = TargetRegistry().get("openvino-cpu")
    model = sir.load("zoo:digits-cnn", zoo=zoo)
    first, second = (target.lower(model, tmp_path / name) for name in ("a", "b"))
    assert first.digest() == second.digest()


MIXED = """
<ir_version: 8, opset_import: ["" : 21]>
g (float[N, 64] x) => (float[N, 64] y) {
    w8 = DequantizeLinear <axis = 1> (q, scale, zero)
    h = MatMul(x, w8)
    y = MatMul(h, w)
}
"""


@pytest.mark.openvino
def test_an_openvino_artifact_with_quantized_weights_stores_its_float_weights_fp16(tmp_path):
    """ov.save_model stores a float model's weights FP16 but keeps every constant FP32 once the
    model holds INT8 weights: a partly quantized model weighed more than the FP32 one."""
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(MIXED)
    proto.graph.initializer.extend([
        onnx.numpy_helper.from_array(rng.integers(-127, 128, (64, 64)).astype(np.int8), "q"),
        onnx.numpy_helper.from_array(np.full(64, 0.01, np.float32), "scale"),
        onnx.numpy_helper.from_array(np.zeros(64, np.int8), "zero"),
        onnx.numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w"),
    ])  # fmt: skip
    model = sir.cleanup(ir.from_proto(proto))
    target = TargetRegistry().get("openvino-cpu")
    artifact = target.lower(model, tmp_path)
    bin_bytes = artifact.path.with_suffix(".bin").stat().st_size
    assert bin_bytes < 64 * 64 * (1 + 2) + 1024  # int8 weights, FP16 float weights, small constants
    x = rng.standard_normal((3, 64)).astype(np.float32)
    ov = pytest.importorskip("openvino")  # the same ONNX model compiled as it is: FP32 float weights
    want = ov.Core().compile_model(str(artifact.onnx), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"x": x})[0]
    got = target.load(artifact)({"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * np.abs(want).max())  # FP16 rounding of w only


@pytest.mark.parametrize("name", ["ort-cpu", pytest.param("openvino-cpu", marks=pytest.mark.openvino)])
def test_an_artifact_runs_at_the_threads_it_was_lowered_and_timed_at(name, tiny, tmp_path):
    """An artifact's settings are what it was measured under: lowered by a one-thread target and
    loaded by a two-thread one, it runs at one thread on either runtime."""
    model, feed = tiny
    artifact = TargetRegistry().get(name, threads=1).lower(model, tmp_path)
    target = TargetRegistry().get(name, threads=2)
    if name == "ort-cpu":
        assert target.session(artifact).get_session_options().intra_op_num_threads == 1
    else:
        assert target.compiled(artifact).get_property("INFERENCE_NUM_THREADS") == 1
    assert np.allclose(target.load(artifact)(feed)[0], TargetRegistry().get(name, threads=1).load(artifact)(feed)[0])
