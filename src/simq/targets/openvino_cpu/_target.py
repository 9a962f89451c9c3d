"""OpenVINO CPU: latency hint, one stream; the artifact is OpenVINO IR (.xml/.bin) beside the ONNX."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from simq.errors import ArtifactError, MissingDependencyError
from simq.ir import save
from simq.targets._api import Artifact, Fingerprint, LatencyStats, time_calls
from simq.targets._fingerprint import cpu_description

__all__ = ["OpenVinoCpuTarget"]

# Blocked INT4 weights decompress inside OpenVINO's MatMul kernels; INT8 QDQ becomes FakeQuantize.
_PRECISIONS = {
    "MatMul": ("fp32", "int8", "int4w"),
    "Gemm": ("fp32", "int8", "int4w"),
    "Conv": ("fp32", "int8"),
    "Gather": ("fp32", "int8"),
}


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError(
            "the openvino-cpu target needs OpenVINO; install it with: pip install 'simq[openvino]'."
        ) from e
    return openvino


class OpenVinoCpuTarget:
    """OpenVINO's CPU plugin with the latency hint, a single stream and FP32 inference precision
    (BF16 is a precision the search should choose, not a silent default).

    Args:
        threads: Inference threads.
    """

    name = "openvino-cpu"

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    def fingerprint(self) -> Fingerprint:
        ov = _openvino()
        cpu, isa, cores = cpu_description()
        return Fingerprint(self.name, cpu, isa, cores, self.threads, "openvino", ov.get_version())

    def supports(self, op_type: str, precision: str) -> bool:
        return precision in _PRECISIONS.get(op_type, ("fp32",))

    def lower(self, model: ir.Model, workdir: Path) -> Artifact:
        """Convert to OpenVINO IR; the ONNX stays beside it as the source of record."""
        ov = _openvino()
        onnx_path = save(model, Path(workdir) / "model.onnx")
        xml = onnx_path.with_suffix(".xml")
        try:
            # Core.read_model runs the same ONNX frontend as ov.convert_model without the converter's
            # telemetry, which forks processes from a thread pool: a fork while numpy's BLAS threads
            # are busy in the main thread deadlocked a compile (and there is no network to send to).
            ov.save_model(ov.Core().read_model(str(onnx_path)), str(xml))
        except Exception as e:  # OpenVINO's frontend errors are plain RuntimeErrors
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"OpenVINO cannot convert {onnx_path}: {first[:200]}") from e
        return Artifact(self.name, xml, onnx_path, (xml, xml.with_suffix(".bin"), onnx_path))

    def compiled(self, artifact: Artifact) -> Any:
        ov = _openvino()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(self.threads),
            # On CPUs with AVX512-BF16 OpenVINO silently runs FP32 models in BF16 unless told not to.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        try:
            return ov.Core().compile_model(str(artifact.path), "CPU", config)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"OpenVINO rejected {artifact.path}: {first[:200]}") from e

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        request, feed = self.compiled(artifact).create_infer_request(), dict(inputs)
        return lambda: request.infer(feed)

    def measure(
        self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50
    ) -> LatencyStats:
        return time_calls(self.runner(artifact, inputs), warmup, repeats)
