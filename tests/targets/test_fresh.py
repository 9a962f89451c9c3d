"""The final pass's timing in a process started for it: real ONNX Runtime sessions in a spawned child."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import simq.ir as sir
from simq.errors import SimqError
from simq.targets import Artifact, TargetRegistry, timed_in_fresh_process

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 64] x) => (float[N, 64] y) {
    h = MatMul(x, w)
    y = Relu(h)
}
"""


def _lowered(folder, target):
    proto = onnx.parser.parse_model(MODEL)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((64, 64), np.float32), "w"))
    folder.mkdir()
    return target.lower(sir.cleanup(ir.from_proto(proto)), folder)


def test_every_artifact_is_timed_against_the_reference_with_progress(tmp_path):
    target = TargetRegistry().get("ort-cpu", threads=1)
    reference = _lowered(tmp_path / "reference", target)
    same = _lowered(tmp_path / "same", target)
    turns = []
    ratios = timed_in_fresh_process(
        target, reference, {7: same, "again": same}, {"x": np.ones((4, 64), np.float32)},
        tolerance=0.5, max_rounds=15, progress=lambda done, total: turns.append((done, total)),
    )  # fmt: skip
    assert set(ratios) == {7, "again"}
    for paired in ratios.values():
        assert 10 <= paired.rounds <= 15 and paired.low <= paired.ratio <= paired.high
        assert 0.2 < paired.ratio < 5  # the same model: about 1, however loaded the host
        assert paired.reference_ms > 0
    assert turns and turns[-1] == (2, 2)  # told after every rotation, all done at the end
    assert timed_in_fresh_process(target, reference, {}, {"x": np.ones((4, 64), np.float32)}) == {}


def test_a_failure_in_the_child_is_one_clear_error(tmp_path):
    target = TargetRegistry().get("ort-cpu", threads=1)
    reference = _lowered(tmp_path / "reference", target)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    artifact = Artifact("ort-cpu", broken, broken, (broken,), dict(reference.settings))
    with pytest.raises(SimqError, match="timing in a fresh process failed: .*"):
        timed_in_fresh_process(target, reference, {1: artifact}, {"x": np.ones((4, 64), np.float32)}, max_rounds=10)
