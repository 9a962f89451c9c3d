"""The final pass's timing in a process started for it: real ONNX Runtime sessions in a new Python process."""

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


def test_the_time_limit_reaches_the_timing_process(tmp_path):
    target = TargetRegistry().get("ort-cpu", threads=1)
    reference = _lowered(tmp_path / "reference", target)
    # Never within ±1e-9 and no round limit to speak of: only the time limit ends it.
    ratios = timed_in_fresh_process(
        target, reference, {1: reference}, {"x": np.ones((4, 64), np.float32)}, tolerance=1e-9, max_rounds=10**5, time_limit=0.3
    )
    assert 10 <= ratios[1].rounds < 10**5


def test_a_failure_in_the_child_is_one_clear_error(tmp_path):
    target = TargetRegistry().get("ort-cpu", threads=1)
    reference = _lowered(tmp_path / "reference", target)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    artifact = Artifact("ort-cpu", broken, broken, (broken,), dict(reference.settings))
    with pytest.raises(SimqError, match="timing in a fresh process failed: .*"):
        timed_in_fresh_process(target, reference, {1: artifact}, {"x": np.ones((4, 64), np.float32)}, max_rounds=10)


class _Dying:
    """A target whose runs kill their process (importable by the child: this module is on the
    path the child inherits)."""

    name = "ort-cpu"

    def __init__(self):
        self.target = TargetRegistry().get("ort-cpu", threads=1)

    def runner(self, artifact, inputs):
        self.target.runner(artifact, inputs)
        return lambda: os._exit(3)


def test_a_child_that_dies_is_one_clear_error(tmp_path):
    target = _Dying()
    reference = _lowered(tmp_path / "reference", target.target)
    with pytest.raises(SimqError, match=r"the timing process ended without its results \(exit code 3\)"):
        timed_in_fresh_process(target, reference, {1: reference}, {"x": np.ones((4, 64), np.float32)}, max_rounds=10)


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
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "model")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(), start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout.readline().strip() == "turn"  # the child is timing
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = process.communicate(timeout=60)
    assert "interrupted" in out
    assert "Traceback" not in err, err


UNGUARDED = """
import pathlib, sys
import numpy as np
from test_fresh import _lowered
from simq.targets import TargetRegistry, timed_in_fresh_process

folder = pathlib.Path(sys.argv[1])
with open(folder / "runs.txt", "a") as runs:
    runs.write("ran\\n")
target = TargetRegistry().get("ort-cpu", threads=1)
artifact = _lowered(folder / "model", target)
print(timed_in_fresh_process(target, artifact, {1: artifact}, {"x": np.ones((4, 64), np.float32)}, tolerance=0.5, max_rounds=10)[1].rounds)
"""


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """The README's Python example has no ``if __name__ == "__main__"``: the timing child must
    not run the caller's script again (a multiprocessing child would re-import it)."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"
    assert (tmp_path / "runs.txt").read_text() == "ran\n"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}


LOCAL_TARGET = """
import pathlib, sys
import numpy as np
from test_fresh import _lowered
from simq.targets import TargetRegistry, timed_in_fresh_process


class Local:  # a target only this script defines: no other process can unpickle it
    name = "ort-cpu"

    def __init__(self):
        self.target = TargetRegistry().get("ort-cpu", threads=1)

    def runner(self, artifact, inputs):
        return self.target.runner(artifact, inputs)


if __name__ == "__main__":
    target = Local()
    artifact = _lowered(pathlib.Path(sys.argv[1]), target.target)
    print(timed_in_fresh_process(target, artifact, {1: artifact}, {"x": np.ones((4, 64), np.float32)}, tolerance=0.5, max_rounds=10)[1].rounds)
"""


def test_a_target_defined_in_the_main_script_is_timed_in_its_process(tmp_path):
    script = tmp_path / "local.py"
    script.write_text(LOCAL_TARGET)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "model")], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"
