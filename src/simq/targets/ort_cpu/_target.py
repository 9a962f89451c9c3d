"""ONNX Runtime, CPU execution provider, full graph optimisation, fused transformer kernels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from simq.errors import ArtifactError
from simq.ir import Structure, save
from simq.passes import Lowering
from simq.passes.fuse import OrtFusionPass
from simq.passes.quant import ort_dynamic, ort_fused, ort_static
from simq.targets._api import Artifact, Fingerprint, LatencyStats, time_calls
from simq.targets._fingerprint import cpu_description, has_int8_dot

__all__ = ["OrtCpuTarget"]

# Per op: the precisions ONNX Runtime's CPU provider has kernels for. int8dyn is
# DynamicQuantizeMatMul / QAttention (activations quantized per call), int8 static QDQ
# (QLinearMatMul/QLinearConv chains), int4w MatMulNBits.
_PRECISIONS = {
    "MatMul": ("fp32", "int8dyn", "int8", "int4w"),
    "Gemm": ("fp32", "int8dyn", "int8", "int4w"),
    "Conv": ("fp32", "int8"),
    "Gather": ("fp32", "int8"),
    "Attention": ("fp32", "int8dyn"),
}
_INTEGER = ("int8dyn", "int8", "int4w")


class OrtCpuTarget:
    """ONNX Runtime's CPU execution provider.

    Every candidate is fused into ONNX Runtime's transformer kernels (Attention,
    SkipLayerNormalization, BiasGelu, ...) before it is quantized (`OrtFusionPass`), so the
    search starts from what the best off-the-shelf recipe gives.

    Args:
        threads: Intra-op threads (inter-op is 1): the cores a deployment gives the model.
        isa: Plan as if the CPU had these ISA flags (as `Fingerprint.isa` spells them), e.g.
            to see what another machine would be offered; measurements still run here, so
            compile on the machine itself.
    """

    name = "ort-cpu"

    def __init__(self, threads: int = 2, isa: Sequence[str] | None = None) -> None:
        self.threads = threads
        self.isa = tuple(isa) if isa is not None else None

    def fingerprint(self) -> Fingerprint:
        cpu, isa, cores = cpu_description()
        return Fingerprint(self.name, cpu, self.isa if self.isa is not None else isa, cores, self.threads, "onnxruntime", ort.__version__)

    def supports(self, op_type: str, precision: str) -> bool:
        if precision in _INTEGER and not _integer_kernels(self.fingerprint().isa):
            return False
        return precision in _PRECISIONS.get(op_type, ("fp32",))

    def lowering(self, signature: Mapping[str, tuple[int, ...]]) -> Lowering:
        """Fuse into ORT's kernels; without an INT8 dot-product instruction (VNNI), MLAS sums
        u8 x s8 products in int16 and can saturate, so dynamic INT8 weights use 7 bits there."""
        return Lowering(fusions=(OrtFusionPass(signature),), reduce_range=not has_int8_dot(self.fingerprint().isa))

    def baselines(
        self, model: ir.Model, structure: Structure, batches: Sequence[Mapping[str, np.ndarray]]
    ) -> dict[str, Callable[[Path], Artifact]]:
        """What ONNX Runtime users run instead: dynamic INT8, static INT8 (QDQ on every supported
        node), and for transformers the ORT fusions alone and fused + dynamic INT8 (per channel),
        the recipe of Optimum's ORT quantizer."""

        def lowered(build: Callable[[], ir.Model]) -> Callable[[Path], Artifact]:
            return lambda workdir: self.lower(build(), workdir)

        baselines = {
            "ORT dynamic INT8": lowered(lambda: ort_dynamic(model)),
            "ORT static INT8": lowered(lambda: ort_static(model, batches)),
        }
        if structure.layers:
            baselines["ORT fused FP32"] = lowered(lambda: ort_fused(model)[0])
            baselines["ORT fused + dynamic INT8"] = lowered(lambda: ort_dynamic(ort_fused(model)[0], per_channel=True))
        return baselines

    def lower(self, model: ir.Model, workdir: Path) -> Artifact:
        """The artifact is the ONNX file itself; ONNX Runtime optimises it when loading."""
        path = save(model, Path(workdir) / "model.onnx")
        return Artifact(self.name, path, path, (path,), self._settings())

    def _settings(self) -> dict[str, str]:
        return {
            "execution_provider": "CPUExecutionProvider",
            "intra_op_num_threads": str(self.threads),
            "inter_op_num_threads": "1",
            "graph_optimization_level": "ORT_ENABLE_ALL",
        }

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

    def load(self, artifact: Artifact) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        session = self.session(artifact)
        return lambda inputs: session.run(None, dict(inputs))

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        session, feed = self.session(artifact), dict(inputs)
        return lambda: session.run(None, feed)

    def measure(
        self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50
    ) -> LatencyStats:
        return time_calls(self.runner(artifact, inputs), warmup, repeats)


def _integer_kernels(isa: Sequence[str]) -> bool:
    """MLAS has integer GEMM kernels for x86 from AVX2 on and for ARM NEON."""
    return bool({"avx2", "avx512", "neon"} & set(isa))
