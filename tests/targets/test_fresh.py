"""The final pass's timing in a process started for it: real ONNX Runtime sessions in a spawned child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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


INTERRUPTED = """
import pathlib, sys
import numpy as np
from test_fresh import _lowered
from simq.targets import TargetRegistry, timed_in_fresh_process

if __name__ == "__main__":
    target = TargetRegistry().get("ort-cpu", threads=1)
    artifact = _lowered(pathlib.Path(sys.argv[1]), target)
    try:
        timed_in_fresh_process(
            target, artifact, {1: artifact}, {"x": np.ones((4, 64), np.float32)}, tolerance=1e-9, max_rounds=10**9,
            progress=lambda done, total: print("turn", flush=True),
        )
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def test_ctrl_c_stops_the_child_without_a_traceback(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "model")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout.readline().strip() == "turn"  # the child is timing
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = process.communicate(timeout=60)
    assert "interrupted" in out
    assert "Traceback" not in err, err
