"""Whether OpenVINO's INT8 dense kernels beat FP32 on this CPU, decided by timing them once.

ISA flags say where INT8 should pay (VNNI, AMX), not how much: on an AVX2-only EPYC OpenVINO's
INT8 MatMuls run slower than FP32 (docs/LOWERING.md: NNCF's INT8 MiniLM 1.13x FP32), on an
AVX-512 VNNI one they run in under half its time. The target times a stack of BERT-like dense
layers both ways on synthetic graphs (a few seconds, in this process) and seeds the search's
width and depth lattice at the precision that pays (`simq.passes.Lowering.seed_precision`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from simq.targets._timing import interleave, paired_ratio
from simq.targets.openvino_cpu._runtime import openvino

__all__ = ["DENSE_SHAPE", "INT8_PAYS_BELOW", "int8_dense_ratio"]

#: The dense layers timed: (tokens, hidden, FFN width), a MiniLM-like FFN.
DENSE_SHAPE = (64, 384, 1536)
#: INT8 seeds the lattice when its dense layers take at most this share of FP32's time (a clear
#: win: INT8 also costs accuracy).
INT8_PAYS_BELOW = 0.9
_LAYERS = 6


def _dense(int8: bool, tokens: int, hidden: int, ffn: int) -> bytes:
    """`_LAYERS` FFNs (MatMul up, MatMul down) in FP32, or with INT8 QDQ on activations and
    per-channel symmetric INT8 weights: the form SimQ's static INT8 writes."""
    rng = np.random.default_rng(0)
    nodes, initializers, previous = [], [], "x"
    if int8:
        initializers += [numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
                         numpy_helper.from_array(np.array(0, np.uint8), "x_zero")]  # fmt: skip
    for i in range(_LAYERS):
        for j, (rows, cols) in enumerate(((hidden, ffn), (ffn, hidden))):
            w = (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)
            name, out = f"w{i}_{j}", f"y{i}_{j}"
            if int8:
                scale = np.abs(w).max(0) / 127
                nodes += [
                    helper.make_node("QuantizeLinear", [previous, "x_scale", "x_zero"], [f"{out}_q"]),
                    helper.make_node("DequantizeLinear", [f"{out}_q", "x_scale", "x_zero"], [f"{out}_a"]),
                    helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"], [name], axis=1),
                    helper.make_node("MatMul", [f"{out}_a", name], [out]),
                ]
                initializers += [numpy_helper.from_array(np.round(w / scale).astype(np.int8), f"{name}_q"),
                                 numpy_helper.from_array(scale.astype(np.float32), f"{name}_s")]  # fmt: skip
            else:
                nodes.append(helper.make_node("MatMul", [previous, name], [out]))
                initializers.append(numpy_helper.from_array(w, name))
            previous = out
    graph = helper.make_graph(
        nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, hidden])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, tokens, hidden])], initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def int8_dense_ratio(config: dict[str, Any]) -> float:
    """Time of the INT8 dense layers over FP32 on this CPU (median of paired rounds,
    `DENSE_SHAPE`), compiled with the target's OpenVINO `config`."""
    ov = openvino()
    core = ov.Core()
    tokens, hidden, ffn = DENSE_SHAPE
    feed = {"x": np.random.default_rng(0).standard_normal((1, tokens, hidden)).astype(np.float32)}
    calls = {}
    for name, int8 in (("fp32", False), ("int8", True)):
        model = core.read_model(model=_dense(int8, tokens, hidden, ffn), weights=b"")
        request = core.compile_model(model, "CPU", config).create_infer_request()
        calls[name] = lambda r=request: r.infer(feed)
    times = interleave(calls, rounds=7, per_round=4)
    return paired_ratio(times["int8"], times["fp32"])
