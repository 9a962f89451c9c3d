"""The baselines OpenVINO users run start from the model as their own tools export it."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.targets import TargetRegistry

pytestmark = pytest.mark.openvino


def _kernels(artifact, ov) -> list[str]:
    compiled = ov.Core().compile_model(str(artifact.path), "CPU", {k: v for k, v in artifact.settings.items() if k != "device"})
    return [str(op.get_rt_info()["layerType"].astype(str)) for op in compiled.get_runtime_model().get_ordered_ops()]


def test_nncf_and_the_default_precision_start_from_the_tools_export(zoo, tmp_path):
    """From Optimum's export, NNCF's INT8 attention compiles to OpenVINO's MHA kernel; from the
    dynamo export SimQ reads (a NaN guard behind each Softmax) it does not: the export is the bar
    users have. The model before tuning gets its own NNCF baseline."""
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    pytest.importorskip("transformers")
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    structure = sir.analyze(model, dict(zoo.entry("bert-tiny").signature))
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:2]
    export = zoo.torch_source("bert-tiny").export_for_tools(batches[0], tmp_path / "export.onnx")
    target = TargetRegistry().get("openvino-cpu")

    given = target.baselines(model, structure, batches)
    exported = target.baselines(model, structure, batches, [export, dataclasses.replace(export, label="original")])
    assert set(exported) == set(given) | {"NNCF INT8 (transformer), original"}

    def build(baselines, name: str, folder: str):
        (tmp_path / folder).mkdir()
        return baselines[name](tmp_path / folder)

    from_export = build(exported, "NNCF INT8 (transformer)", "export")
    from_model = build(given, "NNCF INT8 (transformer)", "model")
    assert "Softmax" not in _kernels(from_export, ov) and "Subgraph" in _kernels(from_export, ov)
    assert "Softmax" in _kernels(from_model, ov)

    feed = batches[0]
    want = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    for name in exported:
        if name.startswith(("NNCF", "OpenVINO default")):
            artifact = build(exported, name, name.replace(" ", "_").replace(",", ""))
            got = target.load(artifact)(feed)[0]
            assert got.shape == want.shape and np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99, name
