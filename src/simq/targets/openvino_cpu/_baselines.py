"""What OpenVINO users run instead of SimQ: the runtime's default precision, NNCF post-training
quantization and NNCF weight compression, each compiled as `_Lowers` compiles.

They start from the model as users' own tools export it where SimQ could make that export
(`simq.ir.ToolsExport`: the TorchScript exporter with eager attention, as Optimum exports). That
graph's attention is already the one OpenVINO fuses into its MHA kernel, where the dynamo export
SimQ reads is not until `simq.passes.fuse.MhaFormPass` rewrites it: NNCF INT8 on the dynamo
export ran 1.26x the time of NNCF INT8 on Optimum's export, and OpenVINO's own PyTorch conversion
(optimum-intel's route) as fast as the latter (minilm-tweets, AMX Xeon; docs/MHA_FORM.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx_ir as ir

from simq.errors import MissingDependencyError
from simq.ir import Structure, ToolsExport, quiet, save
from simq.passes.quant import InferencePrecisionPass
from simq.targets._api import Artifact
from simq.targets.openvino_cpu._runtime import openvino
from simq.targets.ort_cpu import ort_static


class _Lowers(Protocol):
    """What the baselines need of the target (`_Lowers`)."""

    def default_precision(self) -> str: ...

    def lower(self, model: ir.Model, workdir: Path) -> Artifact: ...

    def save_native(self, model: Any, workdir: Path, onnx_path: Path | None, precision: str = "fp32") -> Artifact: ...

__all__ = ["openvino_baselines"]


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as e:
        raise MissingDependencyError("the NNCF baselines need NNCF; install it with: pip install 'simq[openvino]'.") from e
    nncf.set_log_level(logging.ERROR)
    return nncf


def _read(model: ir.Model | ToolsExport, workdir: Path) -> Any:
    """The model as OpenVINO reads it: SimQ's (through a scratch ONNX file) or a tools export."""
    if isinstance(model, ToolsExport):
        return openvino().Core().read_model(str(model.path))
    onnx_path = save(model, Path(workdir) / "model.onnx")
    try:
        return openvino().Core().read_model(str(onnx_path))
    finally:
        onnx_path.unlink()  # the FP32 ONNX is not what a baseline artifact runs


def openvino_baselines(
    target: _Lowers,
    model: ir.Model,
    structure: Structure,
    batches: Sequence[Mapping[str, np.ndarray]],
    exports: Sequence[ToolsExport] = (),
) -> dict[str, Callable[[Path], Artifact]]:
    """Baselines by name, each building its artifact into a folder.

    Every one runs at OpenVINO's default inference precision for this CPU (BF16 where it has
    it): that is what a user gets without pinning it. NNCF uses the transformer preset
    (``ModelType.TRANSFORMER``) when the analysis found transformer layers, its default
    otherwise, on the calibration batches. The default precision and NNCF start from the tools
    export of the model where there is one (else from SimQ's model, the file the user gave);
    for a tuned folder, NNCF INT8 on the model before tuning is beside them (``, original``).
    """
    precision = target.default_precision()
    by_label = {e.label: e for e in exports}
    source: ir.Model | ToolsExport = by_label.get("", model)

    def at_default(build: Callable[[], ir.Model]) -> Callable[[Path], Artifact]:
        def lower(workdir: Path) -> Artifact:
            built = build()
            InferencePrecisionPass(precision)(built)
            return target.lower(built, workdir)

        return lower

    def nncf_quantize(start: ir.Model | ToolsExport) -> Callable[[Path], Artifact]:
        def build(workdir: Path) -> Artifact:
            nncf = _nncf()
            model_type = nncf.ModelType.TRANSFORMER if structure.layers else None
            with quiet(streams=True):
                quantized = nncf.quantize(
                    _read(start, workdir), nncf.Dataset(list(batches)), model_type=model_type,
                    subset_size=sum(len(next(iter(b.values()))) for b in batches),
                )  # fmt: skip
            return target.save_native(quantized, workdir, None, precision)

        return build

    def nncf_weights(workdir: Path) -> Artifact:
        nncf = _nncf()
        with quiet(streams=True):
            compressed = nncf.compress_weights(_read(source, workdir))  # INT8 asymmetric, every MatMul/Gather weight
        return target.save_native(compressed, workdir, None, precision)

    def as_given(start: ir.Model | ToolsExport) -> ir.Model:
        return ir.load(start.path) if isinstance(start, ToolsExport) else start.clone()

    nncf_int8 = "NNCF INT8" + (" (transformer)" if structure.layers else "")
    baselines: dict[str, Callable[[Path], Artifact]] = {}
    if precision != "fp32":
        baselines[f"OpenVINO default ({precision})"] = at_default(lambda: as_given(source))
    baselines[nncf_int8] = nncf_quantize(source)
    baselines["NNCF INT8 weights"] = nncf_weights
    baselines["ORT static INT8"] = at_default(lambda: ort_static(model, batches))
    for export in exports:
        if export.label:
            baselines[f"{nncf_int8}, {export.label}"] = nncf_quantize(export)
    return baselines
