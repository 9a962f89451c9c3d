from __future__ import annotations

import onnx_ir as ir
import onnxruntime as ort

import simq.ir as sir
from simq.passes.quant import ort_dynamic, ort_static


def test_baselines_quantize_and_run(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)]
    dynamic, static = ort_dynamic(model), ort_static(model, batches)
    assert any(n.op_type == "DynamicQuantizeLinear" or n.op_type == "MatMulInteger" for n in dynamic.graph)
    assert sum(n.op_type == "QuantizeLinear" for n in static.graph) > 10
    for quantized in (dynamic, static):
        session = ort.InferenceSession(ir.to_proto(quantized).SerializeToString(), providers=["CPUExecutionProvider"])
        assert session.run(None, batches[0])[0].shape == (16, 32, 128)
