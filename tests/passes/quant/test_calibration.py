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
