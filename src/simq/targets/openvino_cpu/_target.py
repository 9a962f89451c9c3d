"""OpenVINO CPU: latency hint, one stream; the artifact is OpenVINO IR (.xml/.bin) beside the ONNX."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from simq.errors import ArtifactError, first_line
from simq.ir import Structure, ToolsExport, save
from simq.passes import Lowering
from simq.passes.fuse import MhaFormPass
from simq.passes.quant import WHOLE_MODEL, inference_precision
from simq.targets._api import Artifact, Fingerprint, LatencyStats, time_calls
from simq.targets._fingerprint import cpu_description, has_bf16
from simq.targets.openvino_cpu._baselines import openvino_baselines
from simq.targets.openvino_cpu._kernels import INT8_PAYS_BELOW, int8_dense_ratio
from simq.targets.openvino_cpu._runtime import openvino

__all__ = ["OpenVinoCpuTarget"]

# INT8 and blocked INT4 weights without quantized activations decompress inside OpenVINO's float
# MatMul kernels; INT8 QDQ becomes FakeQuantize, which the CPU plugin fuses into its INT8
# primitives (Conv/MatMul chains, eltwise, pooling).
_PRECISIONS = {
    "MatMul": ("fp32", "int8w", "int8", "int4w"),
    "Gemm": ("fp32", "int8w", "int8", "int4w"),
    "Conv": ("fp32", "int8"),
    "Gather": ("fp32", "int8w", "int8"),  # an embedding table's int8w is its int8 table
}
#: Float weights of at least this many values are stored FP16 in SimQ's IR (read back as FP32), as
#: `ov.save_model` stores a float model's; it keeps every constant FP32 once a model holds static
#: INT8 (FakeQuantize) nodes, so a partly quantized model weighed more than the FP32 one (a tuned minilm with 14
#: quantized units: 59 MB against the FP32 model's 45).
_HALF_FROM = 1024
# Ops that read a float weight SimQ may store FP16 (dequantization scales go to Multiply: never).
_HALF_READERS = {"MatMul", "Gather", "Convolution", "GroupConvolution", "Add"}
# SimQ's precision name -> OpenVINO's INFERENCE_PRECISION_HINT.
_HINTS = {"fp32": "f32", "bf16": "bf16"}
_RT_INFO = ["runtime_options", "INFERENCE_PRECISION_HINT"]


def _store_half(model: Any) -> None:
    """Store `model`'s large FP32 weights as FP16 constants read through a Convert to FP32 (what
    the CPU plugin takes as compressed weights)."""
    ov = openvino()
    opset = ov.opset13
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_element_type() != ov.Type.f32 or int(np.prod(list(op.get_shape()))) < _HALF_FROM:
            continue
        readers = list(op.output(0).get_target_inputs())
        if not readers or any(r.get_node().get_type_name() not in _HALF_READERS for r in readers):
            continue
        half = opset.convert(opset.constant(op.get_data().astype(np.float16)), ov.Type.f32)
        for reader in readers:
            reader.replace_source_output(half.output(0))


def _scalar_table_dequantizations(model: ir.Model) -> list[ir.Node]:
    """DequantizeLinear nodes reading the rows an INT8 table Gather (axis 0) picked, by one scalar scale."""
    found = []
    for node in model.graph:
        gather = node.inputs[0].producer() if node.op_type == "DequantizeLinear" else None
        if gather is None or gather.op_type != "Gather" or gather.attributes.get_int("axis", 0) != 0:
            continue
        table, scale = gather.inputs[0].const_value, node.inputs[1].const_value
        if table is not None and len(table.shape) == 2 and scale is not None and scale.numpy().ndim == 0:
            found.append(node)
    return found


def _per_column_tables(model: ir.Model) -> ir.Model:
    """`model` (a copy, where it changes) with each INT8 table's scalar dequantization given as
    the same scale and zero point repeated along the table's columns.

    OpenVINO 2026.4's CPU plugin fails to compile a model with a scalar-dequantized table beside
    an INT8 product of two activations (constant folding of a Convert, openvinotoolkit/openvino#33446):
    1 of 26 candidates of a minilm-tweets run, every such pair on bert-tiny. A per-axis one, of
    the same values, it compiles."""
    if not _scalar_table_dequantizations(model):
        return model
    model = model.clone()
    for node in _scalar_table_dequantizations(model):
        columns = node.inputs[0].producer().inputs[0].const_value.shape[1]
        for i, value in list(enumerate(node.inputs))[1:]:
            if value is None:  # no zero point
                continue
            name = f"{value.name}.columns"
            if name not in model.graph.initializers:  # a table two Gathers read: made once
                repeated = ir.tensor(np.full(columns, value.const_value.numpy()), name=name)
                model.graph.register_initializer(ir.Value(name=name, type=ir.TensorType(repeated.dtype), shape=repeated.shape, const_value=repeated))
            node.replace_input_with(i, model.graph.initializers[name])
        node.attributes["axis"] = ir.AttrInt64("axis", -1)
    return model


class OpenVinoCpuTarget:
    """OpenVINO's CPU plugin with the latency hint and a single stream.

    The inference precision is the model's choice (`simq.passes.quant.InferencePrecisionPass`,
    searched as the ``precision`` knob where the CPU has BF16), never a silent default: OpenVINO
    runs FP32 models in BF16 on such CPUs unless told otherwise, so FP32 is pinned unless the
    model asks for BF16. The hint travels in the IR (``rt_info`` ``runtime_options``).

    Args:
        threads: Inference threads.
        isa: Plan as if the CPU had these ISA flags (see `OrtCpuTarget`).
    """

    name = "openvino-cpu"

    def __init__(self, threads: int = 2, isa: Sequence[str] | None = None) -> None:
        self.threads = threads
        self.isa = tuple(isa) if isa is not None else None
        self._fingerprint: Fingerprint | None = None  # read once: a target object keeps the machine it was made on
        self._int8_dense_ratio: float | None = None  # INT8 dense layers over FP32, timed once

    def fingerprint(self) -> Fingerprint:
        if self._fingerprint is None:
            cpu, isa, cores = cpu_description()
            self._fingerprint = Fingerprint(
                self.name, cpu, self.isa if self.isa is not None else isa, cores, self.threads, "openvino", openvino().get_version()
            )
        return self._fingerprint

    def supports(self, op_type: str, precision: str) -> bool:
        if op_type == WHOLE_MODEL:
            return precision == "fp32" or (precision == "bf16" and has_bf16(self.fingerprint().isa))
        return precision in _PRECISIONS.get(op_type, ("fp32",))

    def lowering(self, signature: Mapping[str, tuple[int, ...]]) -> Lowering:
        """One rewrite, `MhaFormPass`: the CPU plugin fuses the ONNX graph itself when it compiles,
        and the exporter's attention, written as it fuses it, becomes one MHA kernel. Attention's
        MatMuls of two activations read symmetric int8 operands, the only form its INT8 MatMul
        takes for a signed second operand. The search seeds its width and depth lattice in INT8
        where INT8 dense layers were timed clearly faster than FP32 on this CPU, elsewhere in
        FP32: INT8 weights (int8w, as fast as FP32 there at half its bytes) cost the depth seeds the
        accuracy that decides whether they are published (docs/INT8W.md), and where INT8 pays they
        run well behind it (an AVX-512 VNNI Xeon: every MatMul int8w 0.57x FP32's time, INT8
        0.44x); int8w stays a precision the search draws, and a uniform policy it starts from."""
        if self._int8_dense_ratio is None:
            config = {k: v for k, v in self._settings("fp32").items() if k != "device"}
            self._int8_dense_ratio = int8_dense_ratio(config)
        seed = "int8" if self._int8_dense_ratio <= INT8_PAYS_BELOW else "fp32"
        choice = (
            f"INT8 dense layers ran {self._int8_dense_ratio:.2f}x FP32's time on this CPU: the search seeds its width "
            f"and depth lattice in {seed.upper()}"
        )
        mha = "attention written as OpenVINO's CPU plugin fuses it into one MHA kernel (the exporter's NaN guard, zero score bias and Kᵀ chain rewritten)"
        return Lowering(fusions=(MhaFormPass(),), signed_operands=True, seed_precision=seed, notes={0: mha}, choices=(choice,))

    def baselines(
        self,
        model: ir.Model,
        structure: Structure,
        batches: Sequence[Mapping[str, np.ndarray]],
        exports: Sequence[ToolsExport] = (),
    ) -> dict[str, Callable[[Path], Artifact]]:
        """OpenVINO at its default precision, NNCF INT8 (transformer preset where it applies),
        NNCF INT8 weight compression, on the model as users' tools export it where there is that
        export (`exports`), and ORT's static INT8 QDQ model run by OpenVINO."""
        return openvino_baselines(self, model, structure, batches, exports)

    def default_precision(self) -> str:
        """The precision OpenVINO picks for float parts when not told: BF16 where the CPU has it."""
        return "bf16" if has_bf16(self.fingerprint().isa) else "fp32"

    def lower(self, model: ir.Model, workdir: Path) -> Artifact:
        """Convert to OpenVINO IR; the ONNX stays beside it as the source of record (with its INT8
        tables' scales given per column: `_per_column_tables`)."""
        ov = openvino()
        onnx_path = save(_per_column_tables(model), Path(workdir) / "model.onnx")
        try:
            # Core.read_model runs the same ONNX frontend as ov.convert_model without the converter's
            # telemetry, which forks processes from a thread pool: a fork while numpy's BLAS threads
            # are busy in the main thread deadlocked a compile (and there is no network to send to).
            converted = ov.Core().read_model(str(onnx_path))
        except Exception as e:  # OpenVINO's frontend errors are plain RuntimeErrors
            first = first_line(e)
            raise ArtifactError(f"OpenVINO cannot convert {onnx_path}: {first[:200]}") from e
        _store_half(converted)
        return self.save_native(converted, Path(workdir), onnx_path, inference_precision(model))

    def save_native(self, model: Any, workdir: Path, onnx_path: Path | None, precision: str = "fp32") -> Artifact:
        """Save an OpenVINO model (e.g. one NNCF made) as this target's artifact, with its hint."""
        ov = openvino()
        xml = Path(workdir) / "openvino_model.xml"  # the name Optimum Intel loads
        model.set_rt_info(_HINTS[precision], _RT_INFO)
        _stable_names(model)
        ov.save_model(model, str(xml))
        files = (xml, xml.with_suffix(".bin")) + ((onnx_path,) if onnx_path is not None else ())
        return Artifact(self.name, xml, onnx_path or xml, files, self._settings(precision))

    def _settings(self, precision: str) -> dict[str, str]:
        return {
            "device": "CPU",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(self.threads),
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
        }

    def timing_settings(self) -> dict[str, str]:
        """Nothing beyond the artifact's settings: idle OpenVINO requests do not spin."""
        return {}

    def compiled(self, artifact: Artifact) -> Any:
        ov = openvino()
        config = {k: v for k, v in self._settings("fp32").items() if k != "device"}
        config.update({k: v for k, v in artifact.settings.items() if k in config})
        try:
            return ov.Core().compile_model(str(artifact.path), "CPU", config)
        except Exception as e:
            first = first_line(e)
            raise ArtifactError(f"OpenVINO rejected {artifact.path}: {first[:200]}") from e

    def load(self, artifact: Artifact, *, deployment: bool = False) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        compiled = self.compiled(artifact)
        request = compiled.create_infer_request()
        outputs = compiled.outputs

        def run(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            result = request.infer(dict(inputs))
            return [np.array(result[o]) for o in outputs]

        return run

    def runner(self, artifact: Artifact, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        request, feed = self.compiled(artifact).create_infer_request(), dict(inputs)
        return lambda: request.infer(feed)

    def measure(
        self, artifact: Artifact, inputs: Mapping[str, np.ndarray], warmup: int = 10, repeats: int = 50
    ) -> LatencyStats:
        return time_calls(self.runner(artifact, inputs), warmup, repeats)


def _stable_names(model: Any) -> None:
    """Name the layers OpenVINO named itself by their place in the model, not by a counter.

    OpenVINO numbers the nodes it creates (``Constant_169``) with a counter shared by the whole
    process, so the same ONNX saved twice gave two IRs, and an artifact's digest (what its
    timings and scores are kept under) changed every time it was lowered: the final pass then
    found no per-example scores for the models the search had scored.
    """
    for index, op in enumerate(model.get_ordered_ops()):
        kind = op.get_type_name()
        if re.fullmatch(rf"{re.escape(kind)}_\d+", op.get_friendly_name()):
            op.set_friendly_name(f"{kind}_{index}")
