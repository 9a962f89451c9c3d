"""ONNX Runtime, CPU execution provider, full graph optimisation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from simq.errors import ArtifactError
from simq.ir import save
from simq.targets._api import Artifact, Fingerprint, LatencyStats, time_calls
from simq.targets._fingerprint import cpu_description

__all__ = ["OrtCpuTarget"]

_PRECISIONS = {
    "MatMul": ("fp32", "int8", "int4w"),
    "Gemm": ("fp32", "int8", "int4w"),
    "Conv": ("fp32", "int8"),
    "Gather": ("fp32", "int8"),
}


class OrtCpuTarget:
    """ONNX Runtime's CPU execution provider.

    Args:
        threads: Intra-op threads (inter-op is 1): the cores a deployment gives the model.
    """

    name = "ort-cpu"

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    def fingerprint(self) -> Fingerprint:
        cpu, isa, cores = cpu_description()
        return Fingerprint(self.name, cpu, isa, cores, self.threads, "onnxruntime", ort.__version__)

    def supports(self, op_type: str, precision: str) -> bool:
        return precision in _PRECISIONS.get(op_type, ("fp32",))

    def lower(self, model: ir.Model, workdir: Path) -> Artifact:
        """The artifact is the ONNX file itself; ONNX Runtime optimises it when loading."""
        path = save(model, Path(workdir) / "model.onnx")
        return Artifact(self.name, path, path, (path,))

    def session(self, artifact: Artifact) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for bad models
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"ONNX Runtime rejected {artifact.path}: {first[:200]}") from e

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        session, feed = self.session(artifact), dict(inputs)
        return lambda: session.run(None, feed)

    def measure(
        self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50
    ) -> LatencyStats:
        return time_calls(self.runner(artifact, inputs), warmup, repeats)
