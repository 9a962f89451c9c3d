"""Which of ONNX Runtime's CPU kernels this machine runs fastest, decided by timing them once.

ISA flags do not say everything: ORT's SkipLayerNormalization kernel runs 2.8x slower than Add +
LayerNormalization on an AVX2 EPYC and may not elsewhere. Where two equivalent forms exist, the
target times both on small synthetic graphs (a second, in this process) and lowers to the faster.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from simq.targets._timing import interleave, paired_ratio

__all__ = ["RESIDUAL_NORM_SHAPE", "SUM_FASTER_BY", "residual_norm_ratio"]

#: The residual layer norm the choice is timed at: (tokens, hidden), a BERT-base-like layer.
RESIDUAL_NORM_SHAPE = (64, 768)
#: Sum + LayerNormalization replaces SkipLayerNormalization when it takes at most this share of
#: its time (a clear win, not noise).
SUM_FASTER_BY = 0.85
_LAYERS = 12


def _residual_norms(fused: bool, tokens: int, hidden: int) -> bytes:
    nodes, previous = [], "x"
    for i in range(_LAYERS):
        if fused:
            nodes.append(helper.make_node("SkipLayerNormalization", [previous, "skip", "gamma", "beta"], [f"y{i}"], domain="com.microsoft"))
        else:
            nodes.append(helper.make_node("Sum", [previous, "skip"], [f"s{i}"]))
            nodes.append(helper.make_node("LayerNormalization", [f"s{i}", "gamma", "beta"], [f"y{i}"], axis=-1, epsilon=1e-12))
        previous = f"y{i}"
    shape = [1, tokens, hidden]
    graph = helper.make_graph(
        nodes, "residual_norms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape), helper.make_tensor_value_info("skip", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.ones(hidden, np.float32), "gamma"), numpy_helper.from_array(np.zeros(hidden, np.float32), "beta")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString()


def residual_norm_ratio(threads: int, settings: dict[str, str]) -> float:
    """Time of Sum + LayerNormalization over SkipLayerNormalization on this CPU (median of paired
    rounds, `RESIDUAL_NORM_SHAPE`), in sessions like the target's."""
    tokens, hidden = RESIDUAL_NORM_SHAPE
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal((1, tokens, hidden)).astype(np.float32) for name in ("x", "skip")}
    calls = {}
    for name, fused in (("skip", True), ("sum", False)):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
        for key, value in settings.items():
            options.add_session_config_entry(key, value)
        session = ort.InferenceSession(_residual_norms(fused, tokens, hidden), options, providers=["CPUExecutionProvider"])
        calls[name] = lambda s=session: s.run(None, feed)
    times = interleave(calls, rounds=7, per_round=4)
    return paired_ratio(times["sum"], times["skip"])
