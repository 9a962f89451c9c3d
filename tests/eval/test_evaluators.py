from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

import simq.ir as sir
from simq.errors import InvalidArgumentError
from simq.eval import AccuracyEvaluator, FidelityEvaluator, UserEvaluator, load_evaluator


def test_accuracy_and_fidelity_on_a_real_model(zoo, tmp_path):
    path = zoo.path("digits-cnn")
    test = zoo.data("digits-cnn", "test")
    accuracy = AccuracyEvaluator(test.inputs, test.labels).evaluate(path)
    assert accuracy == pytest.approx(100 * zoo.info("digits-cnn")["onnx_test_accuracy"], abs=1e-6)
    fidelity = FidelityEvaluator(path, test.inputs)
    assert fidelity.evaluate(path) == pytest.approx(100.0)
    # A model with its weights scaled by -1 on the last layer points the other way: fidelity falls.
    model = sir.load(path)
    last = [v for v in model.graph.initializers.values() if v.const_value is not None and v.const_value.numpy().ndim == 2][-1]
    last.const_value = ir.tensor(-last.const_value.numpy())
    flipped = sir.save(model, tmp_path / "flipped.onnx")
    assert fidelity.evaluate(flipped) < 50


def test_evaluator_specs_and_bad_values_are_clear_errors():
    with pytest.raises(InvalidArgumentError, match="module:function"):
        load_evaluator("just_a_module")
    with pytest.raises(InvalidArgumentError, match="cannot import"):
        load_evaluator("no_such_module_here:f")
    with pytest.raises(InvalidArgumentError, match="has no function"):
        load_evaluator("math:no_such_function")
    assert load_evaluator("math:sqrt").name == "sqrt"
    with pytest.raises(InvalidArgumentError, match="not a number"):
        UserEvaluator(lambda path: "high", "f").evaluate("x.onnx")
    with pytest.raises(InvalidArgumentError, match="finite"):
        UserEvaluator(lambda path: float("nan"), "f").evaluate("x.onnx")
    with pytest.raises(InvalidArgumentError, match="as many labels"):
        AccuracyEvaluator({"x": np.zeros((3, 2))}, np.zeros(2))
