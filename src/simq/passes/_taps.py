"""Running a model through ONNX Runtime while reading some of its intermediate activations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

__all__ = ["tapped_runs"]


def tapped_runs(
    model: ir.Model, names: Sequence[str], batches: Iterable[Mapping[str, np.ndarray]]
) -> Iterator[tuple[Mapping[str, np.ndarray], dict[str, np.ndarray]]]:
    """For each feed, yield it with the values named `names` (made graph outputs of a copy)."""
    clone = model.clone()
    values = {v.name: v for n in clone.graph for v in n.outputs} | {v.name: v for v in clone.graph.inputs}
    present = {v.name for v in clone.graph.outputs}
    for name in names:
        if name not in present:
            clone.graph.outputs.append(values[name])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(ir.to_proto(clone).SerializeToString(), options, providers=["CPUExecutionProvider"])
    for feed in batches:
        yield feed, dict(zip(names, session.run(list(names), dict(feed))))
