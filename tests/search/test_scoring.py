"""What a job scores by when the data has no labels: agreement with FP32 where the FP32 model's
answers vary, output cosine where it answers one class (random weights), with a note."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

import simq.ir as sir
from simq.data import DataOptions, load_data
from simq.eval import AgreementEvaluator, FidelityEvaluator
from simq.ir import InputDomain
from simq.search._scoring import evaluators

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 3] y) {
    z = MatMul(x, w)
    y = Add(z, b)
}
"""


def _classifier(bias: list[float]) -> ir.Model:
    proto = onnx.parser.parse_model(MODEL)
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    proto.graph.initializer.extend([onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(np.array(bias, np.float32), "b")])
    return sir.cleanup(ir.from_proto(proto))


def test_a_classifier_answering_one_class_is_scored_by_output_cosine(tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.random.default_rng(1).standard_normal((200, 4)))
    data = load_data(DataOptions(path), [InputDomain("x", np.dtype(np.float32), (1, 4))])
    assert not data.labelled
    search, final, note = evaluators(_classifier([0, 0, 0]), data, 16, None, tmp_path / "cache")
    assert isinstance(search, AgreementEvaluator) and isinstance(final, AgreementEvaluator) and note is None
    search, final, note = evaluators(_classifier([100, 0, 0]), data, 16, None, tmp_path / "cache")
    assert isinstance(search, FidelityEvaluator) and isinstance(final, FidelityEvaluator)
    assert "one class for 100% of the validation examples" in note
