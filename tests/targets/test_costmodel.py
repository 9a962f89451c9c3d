from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import simq.ir as sir
from simq.errors import InvalidArgumentError
from simq.passes.prune import PruneOptions, prune, pruning_knobs
from simq.passes.quant import QuantizePass, calibrate, quantize
from simq.targets import CostModel, TargetRegistry, features


@pytest.fixture(scope="module")
def bert(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    signature = dict(zoo.entry("bert-tiny").signature)
    structure = sir.analyze(model, signature)
    calibration = calibrate(model, structure, (x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)))
    return model, structure, calibration, signature


def _candidate(bert, config, precision):
    model, structure, calibration, signature = bert
    pruned = prune(model.clone(), structure, config, options=PruneOptions(order="first"))
    after = sir.analyze(pruned, signature)
    policy = {k.name: precision for k in QuantizePass.knobs(after) if precision in k.domain}
    quantized = quantize(pruned, after, policy, calibration) if precision != "fp32" else pruned
    return quantized, sir.analyze(quantized, signature)


def test_features_see_pruning_and_precision(bert):
    fp32 = features(*_candidate(bert, {}, "fp32"))
    int8 = features(*_candidate(bert, {}, "int8"))
    int4 = features(*_candidate(bert, {}, "int4w"))
    smaller = features(*_candidate(bert, {"ffn.0": 128, "ffn.1": 128}, "fp32"))
    assert fp32["MatMul.int8.macs"] == 0 and fp32["MatMul.fp32.macs"] > 0
    assert int8["MatMul.int8.macs"] == fp32["MatMul.fp32.macs"] and int8["quantize_ops"] > 0
    assert int8["MatMul.int8.weight_bytes"] * 4 == pytest.approx(fp32["MatMul.fp32.weight_bytes"], rel=0.05)
    assert int4["MatMul.int4w.count"] == 12 and int4["MatMul.int4w.weight_bytes"] < int8["MatMul.int8.weight_bytes"]
    assert smaller["MatMul.fp32.macs"] < fp32["MatMul.fp32.macs"]


def test_cost_model_trains_predicts_and_is_bound_to_its_fingerprint_and_timing(bert, tmp_path):
    target = TargetRegistry().get("ort-cpu")
    model, structure, calibration, signature = bert
    knobs = pruning_knobs(structure)
    rng = np.random.default_rng(0)
    feed = {"input_ids": np.ones((1, 32), np.int64), "attention_mask": np.ones((1, 32), np.int64)}
    samples, latencies = [], []
    for i in range(8):
        config = {k.name: k.domain[rng.integers(len(k.domain))] for k in knobs if not k.name.startswith("depth")}
        candidate, after = _candidate(bert, config, ("fp32", "int8")[i % 2])
        samples.append(features(candidate, after))
        latencies.append(target.measure(target.lower(candidate, tmp_path / str(i)), feed, warmup=2, repeats=5).median)
    timing = target.timing_settings()
    cost_model = CostModel(target.fingerprint(), seed=0, iterations=50, timing=timing).fit(samples, latencies)
    predictions = cost_model.predict_many(samples)
    assert all(p.latency_ms > 0 and p.std_ms >= 0 for p in predictions)

    loaded = CostModel.load(cost_model.save(tmp_path / "cm"), target.fingerprint(), timing)
    assert [p.latency_ms for p in loaded.predict_many(samples)] == pytest.approx([p.latency_ms for p in predictions])
    other = dataclasses.replace(target.fingerprint(), threads=7)
    with pytest.raises(InvalidArgumentError, match="retrain"):
        CostModel.load(tmp_path / "cm", other, timing)
    with pytest.raises(InvalidArgumentError, match="timed under"):  # labels from another timing protocol
        CostModel.load(tmp_path / "cm", target.fingerprint(), {"session.intra_op.allow_spinning": "0"})
    with pytest.raises(InvalidArgumentError, match="at least 4"):
        CostModel(other, seed=0).fit(samples[:2], latencies[:2])


def test_cost_model_extrapolates_an_additive_cost_beyond_its_training_range():
    """Sub-networks a search has not measured yet are often smaller or larger than all it has;
    trees alone predict the nearest seen value there, the additive base scales."""
    rng = np.random.default_rng(0)

    def latency(s: dict) -> float:
        return 0.5 + 2e-6 * s["MatMul.fp32.macs"] + 0.5e-6 * s["MatMul.int8.macs"] + 0.01 * s["quantize_ops"]

    def sample(low: float, high: float) -> dict:
        return {
            "MatMul.fp32.macs": rng.uniform(low, high),
            "MatMul.int8.macs": rng.uniform(low, high),
            "quantize_ops": rng.integers(0, 40),
        }

    train = [sample(1e6, 3e6) for _ in range(30)]
    fingerprint = TargetRegistry().get("ort-cpu").fingerprint()
    model = CostModel(fingerprint, seed=0).fit(train, [latency(s) * rng.uniform(0.97, 1.03) for s in train])
    outside = [sample(4e6, 6e6) for _ in range(10)]
    errors = [abs(p.latency_ms - latency(s)) / latency(s) for p, s in zip(model.predict_many(outside), outside)]
    assert max(errors) < 0.1
