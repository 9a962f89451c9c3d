from __future__ import annotations

import numpy as np

import simq.ir as sir
from simq.passes.quant import QuantizePass, calibrate, quant_knob, sensitivity


def test_sensitivity_scores_every_int8_capable_node(zoo):
    model = sir.load("zoo:digits-resnet", zoo=zoo)
    structure = sir.analyze(model, zoo.entry("digits-resnet").signature)
    batches = [x for x, _ in zoo.data("digits-resnet", "calibration").batches(64)]
    calibration = calibrate(model, structure, batches)
    scores = sensitivity(model, structure, calibration, batches[:2])
    assert set(scores) == {k.name[len(quant_knob("")) :] for k in QuantizePass.knobs(structure)}
    values = np.array(list(scores.values()))
    assert (values >= 0).all() and values.max() > 0
