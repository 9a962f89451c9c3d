"""ONNX Runtime, CPU execution provider, full graph optimisation, fused transformer kernels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from simq.errors import ArtifactError, first_line
from simq.ir import Structure, ToolsExport, save
from simq.passes import Lowering
from simq.passes.fuse import OrtFusionPass, ResidualBiasIntoMatMulPass, SkipLayerNormAsSumPass
from simq.targets._api import Artifact, Fingerprint, LatencyStats, time_calls
from simq.targets._fingerprint import cpu_description, has_int8_dot, integer_kernels
from simq.targets.ort_cpu._baselines import ort_baselines
from simq.targets.ort_cpu._kernels import SUM_FASTER_BY, residual_norm_ratio

__all__ = ["OrtCpuTarget"]

# Per op: the precisions ONNX Runtime's CPU provider has kernels for. int8dyn is
# DynamicQuantizeMatMul / QAttention (activations quantized per call), int8 static QDQ
# (QLinearMatMul/QLinearConv chains), int4w MatMulNBits (GatherBlockQuantized for an embedding).
_PRECISIONS = {
    "MatMul": ("fp32", "int8dyn", "int8", "int4w"),
    "Gemm": ("fp32", "int8dyn", "int8", "int4w"),
    "Conv": ("fp32", "int8"),
    "Gather": ("fp32", "int8", "int4w"),
    "Attention": ("fp32", "int8dyn"),
}
_INTEGER = ("int8dyn", "int8", "int4w")
#: What SimQ times and scores under, beside what the artifact records for deployment. ORT's
#: intra-op workers spin between the ops of a run (a deployment's default) and after it, where,
#: with several sessions in one process, an idle session's spinning worker takes the cores of the
#: one being timed. Spinning stays on during a run and stops when the run returns
#: (`session.force_spinning_stop`): no idle session spins, and no op pays a thread wake-up a
#: deployment does not. With spinning off instead, ratios moved further from a one-session
#: deployment's and width-pruned models paid the wake-ups of every op (docs/SPINNING.md).
_TIMING = {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}


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
        self._fingerprint: Fingerprint | None = None  # read once: a target object keeps the machine it was made on
        self._residual_norm_ratio: float | None = None  # Sum + LayerNormalization over SkipLayerNormalization, timed once

    def fingerprint(self) -> Fingerprint:
        if self._fingerprint is None:
            cpu, isa, cores = cpu_description()
            self._fingerprint = Fingerprint(
                self.name, cpu, self.isa if self.isa is not None else isa, cores, self.threads, "onnxruntime", ort.__version__
            )
        return self._fingerprint

    def supports(self, op_type: str, precision: str) -> bool:
        if precision in _INTEGER and not integer_kernels(self.fingerprint().isa):
            return False
        return precision in _PRECISIONS.get(op_type, ("fp32",))

    def lowering(self, signature: Mapping[str, tuple[int, ...]]) -> Lowering:
        """Fuse into ORT's kernels; residual layer norms as Sum + LayerNormalization where that
        runs clearly faster here than ORT's SkipLayerNormalization (timed once per target), their
        biases then handed to the dynamic-INT8 or INT4-weight MatMul feeding them; without
        an INT8 dot-product instruction (VNNI), MLAS sums u8 x s8 products in int16 and can
        saturate, so dynamic INT8 weights use 7 bits there."""
        fusions: tuple[ir.passes.PassBase, ...] = (OrtFusionPass(signature),)
        finishing: tuple[ir.passes.PassBase, ...] = ()
        notes: dict[int, str] = {}
        if self._residual_norm_ratio is None:
            self._residual_norm_ratio = residual_norm_ratio(self.threads, self.timing_settings())
        if self._residual_norm_ratio <= SUM_FASTER_BY:
            fusions += (SkipLayerNormAsSumPass(),)
            notes[len(fusions) - 1] = (
                f"residual layer norms run as Sum + LayerNormalization: {1 / self._residual_norm_ratio:.1f}x faster than ONNX "
                "Runtime's SkipLayerNormalization kernel on this CPU (timed when the job was prepared)."
            )
            finishing = (ResidualBiasIntoMatMulPass(),)
        return Lowering(fusions=fusions, reduce_range=not has_int8_dot(self.fingerprint().isa), notes=notes, finishing=finishing)

    def baselines(
        self,
        model: ir.Model,
        structure: Structure,
        batches: Sequence[Mapping[str, np.ndarray]],
        exports: Sequence[ToolsExport] = (),
    ) -> dict[str, Callable[[Path], Artifact]]:
        """What ONNX Runtime users run instead (`simq.targets.ort_cpu.ort_baselines`): dynamic and
        static INT8, and for transformers ORT's transformers optimizer alone and with dynamic
        INT8 per tensor, the recipe of Optimum's CPU INT8 path."""
        return ort_baselines(self.lower, model, structure, batches, exports)

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

    def timing_settings(self) -> dict[str, str]:
        return dict(_TIMING)

    def session(self, artifact: Artifact, *, deployment: bool = False) -> ort.InferenceSession:
        """An ONNX Runtime session of `artifact` with its settings (its threads, as it was lowered
        and timed, whatever this target's); with SimQ's timing settings (`timing_settings`) unless
        `deployment` asks for the settings alone, as a user runs it."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(artifact.settings.get("intra_op_num_threads", self.threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not deployment:
            for key, value in _TIMING.items():
                options.add_session_config_entry(key, value)
        try:
            return ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for bad models
            first = first_line(e)
            raise ArtifactError(f"ONNX Runtime rejected {artifact.path}: {first[:200]}") from e

    def load(self, artifact: Artifact, *, deployment: bool = False) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        session = self.session(artifact, deployment=deployment)
        return lambda inputs: session.run(None, dict(inputs))

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        session, feed = self.session(artifact), dict(inputs)
        return lambda: session.run(None, feed)

    def measure(
        self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50
    ) -> LatencyStats:
        return time_calls(self.runner(artifact, inputs), warmup, repeats)
