"""The baselines ONNX Runtime users run: plain quantizers, and the recipe Optimum's CPU INT8 path
produces (a TorchScript export with eager attention, ORT's transformers optimizer, per-tensor
dynamic INT8)."""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes.fuse import FUSION_METADATA
from simq.targets.ort_cpu import RECIPE, OrtCpuTarget, ort_dynamic, ort_optimizer, ort_static


def _run(model: ir.Model, feed):
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_baselines_quantize_and_run(zoo, caplog):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)]
    with caplog.at_level(logging.WARNING):
        dynamic, static = ort_dynamic(model), ort_static(model, batches)
    assert not caplog.records  # ORT's quantizer advice stays off the user's terminal
    assert any(n.op_type == "DynamicQuantizeLinear" or n.op_type == "MatMulInteger" for n in dynamic.graph)
    assert sum(n.op_type == "QuantizeLinear" for n in static.graph) > 10
    for quantized in (dynamic, static):
        assert _run(quantized, batches[0]).shape == (16, 32, 128)


def test_the_recipe_fuses_attention_and_quantizes_it_per_tensor(zoo, tmp_path):
    pytest.importorskip("transformers")
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    feed = next(zoo.data("bert-tiny", "calibration").batches(4))[0]
    export = zoo.torch_source("bert-tiny").export_for_tools(feed, tmp_path / "export.onnx")
    assert (export.model_type, export.num_heads, export.hidden_size) == ("bert", 2, 128)

    fused = ort_optimizer(export)
    record = json.loads(fused.metadata_props[FUSION_METADATA])
    assert record["status"] == "fused" and record["counts"]["Attention"] == 2  # both layers, with num_heads from the config
    recipe = ort_dynamic(fused)
    ops = Counter(n.op_type for n in recipe.graph)
    assert ops["QAttention"] == 2 and ops["MatMulInteger"] > 0
    scales = [recipe.graph.initializers[n.inputs[3].name] for n in recipe.graph if n.op_type == "MatMulInteger" and n.inputs[3].name in recipe.graph.initializers]
    assert scales and all(v.const_value.numpy().size == 1 for v in scales)  # per tensor, as users run it

    expected = _run(model, feed)
    assert np.allclose(_run(fused, feed), expected, atol=1e-4)  # the same model, fused
    assert np.corrcoef(_run(recipe, feed).ravel(), expected.ravel())[0, 1] > 0.99


def test_without_an_export_the_recipe_comes_from_simqs_own_fusion(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    structure = sir.analyze(model, {"input_ids": (1, 32), "attention_mask": (1, 32)})
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)]
    target = OrtCpuTarget()
    assert f"{RECIPE} (SimQ's fusion)" in target.baselines(model, structure, batches)
    assert RECIPE not in target.baselines(model, structure, batches)


def test_simqs_sessions_stop_spinning_after_each_run_and_deployments_keep_the_default(zoo, tmp_path):
    """SimQ's sessions spin during a run (as a deployment does) and stop when it returns, so that no
    idle session takes the cores of the one being timed; a deployment keeps ORT's defaults."""
    target = OrtCpuTarget()
    artifact = target.lower(sir.load("zoo:bert-tiny", zoo=zoo), tmp_path)
    stop, spin = "session.force_spinning_stop", "session.intra_op.allow_spinning"
    assert target.timing_settings() == {spin: "1", stop: "1"}
    timed = target.session(artifact).get_session_options()
    assert (timed.get_session_config_entry(stop), timed.get_session_config_entry(spin)) == ("1", "1")
    deployed = target.session(artifact, deployment=True).get_session_options()
    for key in (stop, spin):
        with pytest.raises(RuntimeError):  # not set: ONNX Runtime's default, as a user runs it
            deployed.get_session_config_entry(key)
        assert key not in artifact.settings


def test_residual_norms_are_lowered_to_what_this_cpu_runs_faster():
    """The target times SkipLayerNormalization against Sum + LayerNormalization once and keeps the
    faster; either way the decision is stated in the lowering's notes when it departs from ORT's.
    With the Sum, the residual biases are handed to the quantized MatMuls after quantization."""
    from simq.passes.fuse import ResidualBiasIntoMatMulPass, SkipLayerNormAsSumPass

    target = OrtCpuTarget()
    lowering = target.lowering({"input_ids": (1, 16)})
    rewrites = any(isinstance(f, SkipLayerNormAsSumPass) for f in lowering.fusions)
    assert rewrites == (target._residual_norm_ratio <= 0.85)
    assert set(lowering.notes) == ({len(lowering.fusions) - 1} if rewrites else set())
    assert [type(f) for f in lowering.finishing] == ([ResidualBiasIntoMatMulPass] if rewrites else [])
    assert target.lowering({"input_ids": (1, 16)}).fusions[-1].__class__ is lowering.fusions[-1].__class__  # timed once
