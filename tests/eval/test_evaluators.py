from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

import simq.ir as sir
from simq.errors import InvalidArgumentError
from simq.eval import AccuracyEvaluator, FidelityEvaluator, UserEvaluator, load_evaluator
from simq.targets.ort_cpu import OrtCpuTarget


def test_accuracy_and_fidelity_on_a_real_model(zoo, tmp_path):
    path = zoo.path("digits-cnn")
    test = zoo.data("digits-cnn", "test")
    accuracy = AccuracyEvaluator(test.inputs, test.labels).evaluate_onnx(path)
    assert accuracy == pytest.approx(100 * zoo.info("digits-cnn")["onnx_test_accuracy"], abs=1e-6)
    fidelity = FidelityEvaluator(path, test.inputs)
    assert fidelity.evaluate_onnx(path) == pytest.approx(100.0)
    # A model with its weights scaled by -1 on the last layer points the other way: fidelity falls.
    model = sir.load(path)
    last = [v for v in model.graph.initializers.values() if v.const_value is not None and v.const_value.numpy().ndim == 2][-1]
    last.const_value = ir.tensor(-last.const_value.numpy())
    flipped = sir.save(model, tmp_path / "flipped.onnx")
    assert fidelity.evaluate_onnx(flipped) < 50


def test_evaluator_specs_and_bad_values_are_clear_errors():
    with pytest.raises(InvalidArgumentError, match="module:function"):
        load_evaluator("just_a_module")
    with pytest.raises(InvalidArgumentError, match="cannot import"):
        load_evaluator("no_such_module_here:f")
    with pytest.raises(InvalidArgumentError, match="has no function"):
        load_evaluator("math:no_such_function")
    assert load_evaluator("math:sqrt").name == "sqrt"
    with pytest.raises(InvalidArgumentError, match="not a number"):
        UserEvaluator(lambda path: "high", "f").evaluate_onnx("x.onnx")
    with pytest.raises(InvalidArgumentError, match="finite"):
        UserEvaluator(lambda artifact, run: float("nan"), "f").evaluate(lambda inputs: [])
    with pytest.raises(InvalidArgumentError, match="as many labels"):
        AccuracyEvaluator({"x": np.zeros((3, 2))}, np.zeros(2))


def test_a_user_evaluator_gets_the_artifact_and_a_ready_runner(zoo, tmp_path, monkeypatch):
    """Two parameters: (artifact, run); one parameter: the ONNX path, as before. The module is
    found in the current folder."""
    (tmp_path / "my_eval.py").write_text(
        "import numpy as np\n"
        "def score(artifact, run):\n"
        "    x = np.zeros((2, 1, 8, 8), np.float32)\n"
        "    return float(run({'pixel_values': x})[0].shape[0]) + (1000 if artifact.path.suffix == '.onnx' else 0)\n"
        "def old(path):\n"
        "    return len(path)\n"
    )
    monkeypatch.chdir(tmp_path)
    target = OrtCpuTarget()
    artifact = target.lower(sir.load(zoo.path("digits-cnn")), tmp_path)
    assert load_evaluator("my_eval:score").evaluate(target.load(artifact), artifact) == 1002
    assert load_evaluator("my_eval:old").evaluate(target.load(artifact), artifact) == len(str(artifact.onnx))


def test_text_batches_are_cut_to_their_longest_example_with_the_same_score(text_model, text_csv, tmp_path):
    from simq.data import DataOptions
    from simq.eval import onnx_runner
    from simq.search import JobSpec, prepare_job

    job = prepare_job(JobSpec(model=str(text_model), data=DataOptions(text_csv), baselines=False, cache_dir=tmp_path), None).job
    evaluator = job.final_evaluator
    assert evaluator.mask == "attention_mask"  # a classifier with a dynamic sequence length, padded on the right
    run = onnx_runner(sir.save(job.model, tmp_path / "model.onnx"))
    widths: list[int] = []

    def recording(inputs):
        mask = inputs["attention_mask"]
        assert mask[:, -1].any() and all(v.shape[1] == mask.shape[1] for v in inputs.values())  # no all-padding column
        widths.append(mask.shape[1])
        return run(inputs)

    cut = AccuracyEvaluator(evaluator.inputs, evaluator.labels, 4, evaluator.mask)  # small batches: several widths
    full = AccuracyEvaluator(evaluator.inputs, evaluator.labels, 4)
    assert cut.evaluate(recording) == full.evaluate(run)
    assert widths == sorted(widths) and widths[0] < evaluator.inputs["attention_mask"].shape[1]
