from __future__ import annotations

import numpy as np

import simq.ir as sir
from simq.passes.quant import Calibration, TensorRange, calibrate
from simq.passes.quant._regions import int8_activations


def test_ranges_cover_every_quantizable_input_and_survive_a_round_trip(zoo, tmp_path):
    model = sir.load("zoo:digits-cnn", zoo=zoo)
    structure = sir.analyze(model, zoo.entry("digits-cnn").signature)
    batches = [x for x, _ in zoo.data("digits-cnn", "calibration").batches(64)]
    calibration = calibrate(model, structure, batches)
    assert set(calibration.ranges) == set(int8_activations(model, structure))
    pixels = np.concatenate([b["pixel_values"] for b in batches])
    first = calibration.ranges["pixel_values"]
    assert first.low.shape == (1,)  # one channel, NCHW
    assert first.bounds() == (min(0.0, float(pixels.min())), float(pixels.max()))
    calibration.save(tmp_path / "c.npz")
    loaded = Calibration.load(tmp_path / "c.npz")
    for name, r in calibration.ranges.items():
        np.testing.assert_array_equal(loaded.ranges[name].high, r.high)


def test_bounds_over_kept_channels():
    r = TensorRange(low=np.array([-1.0, -5.0, 0.5]), high=np.array([2.0, 1.0, 9.0]))
    assert r.bounds() == (-5.0, 9.0)
    assert r.bounds([0, 1]) == (-5.0, 2.0)
    assert r.bounds([2]) == (0.0, 9.0)  # always contains zero


def test_an_activation_of_near_zero_range_calibrates_without_a_clip():
    """A near-dead activation (values of order 1e-43, as random weights or dead channels give)
    is narrower than any histogram numpy can bin: it keeps its range, with nothing to clip."""
    import onnx_ir as ir

    from simq.passes.quant import calibrate_values

    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2, 3]))
    tiny = ir.node("Mul", [x, ir.Value(name="k", const_value=ir.tensor(np.array(1e-43, np.float32), name="k"))], name="tiny")
    tiny.outputs[0].name = "y"
    wide = ir.node("Add", [x, x], name="wide")
    wide.outputs[0].name = "z"
    for v in (tiny.outputs[0], wide.outputs[0]):
        v.type, v.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape([2, 3])
    graph = ir.Graph([x], [tiny.outputs[0], wide.outputs[0]], nodes=[tiny, wide], initializers=[tiny.inputs[1]], opset_imports={"": 17})
    batches = [{"x": np.random.default_rng(i).standard_normal((2, 3)).astype(np.float32)} for i in range(2)]
    ranges = calibrate_values(ir.Model(graph, ir_version=9), ["y", "z"], batches).ranges
    assert 0 < float(ranges["y"].high.max()) < 1e-40 and ranges["y"].clip is None
    assert float(ranges["z"].high.max()) > 0.1
