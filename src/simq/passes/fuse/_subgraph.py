"""Running part of a graph on its own, for rules that check what a subgraph computes."""

from __future__ import annotations

import onnx_ir as ir
import onnxruntime as ort

__all__ = ["subgraph_session"]


def subgraph_session(sources: list[ir.Value], output: ir.Value) -> ort.InferenceSession:
    """An ONNX Runtime session computing `output` from `sources` (the subgraph between them).

    Raises:
        Whatever extraction or ONNX Runtime raise for a subgraph that cannot stand alone.
    """
    graph = output.graph
    sub = ir.convenience.extract(graph, sources, [output])
    model = ir.Model(sub, ir_version=10)
    for domain, version in graph.opset_imports.items():
        sub.opset_imports.setdefault(domain, version)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"])
