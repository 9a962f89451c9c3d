"""What OpenVINO users run instead of SimQ: the runtime's default precision, NNCF post-training
quantization and NNCF weight compression, each compiled as `_Lowers` compiles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx_ir as ir

from simq.errors import MissingDependencyError
from simq.ir import Structure, quiet, save
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


def _read(target: _Lowers, model: ir.Model, workdir: Path) -> tuple[Any, Path]:
    """The model as OpenVINO reads it, and the ONNX file it was read from."""
    onnx_path = save(model, Path(workdir) / "model.onnx")
    return openvino().Core().read_model(str(onnx_path)), onnx_path


def openvino_baselines(
    target: _Lowers, model: ir.Model, structure: Structure, batches: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, Callable[[Path], Artifact]]:
    """Baselines by name, each building its artifact into a folder.

    Every one runs at OpenVINO's default inference precision for this CPU (BF16 where it has
    it): that is what a user gets without pinning it. NNCF uses the transformer preset
    (``ModelType.TRANSFORMER``) when the analysis found transformer layers, its default
    otherwise, on the calibration batches.
    """
    precision = target.default_precision()

    def at_default(build: Callable[[], ir.Model]) -> Callable[[Path], Artifact]:
        def lower(workdir: Path) -> Artifact:
            built = build()
            InferencePrecisionPass(precision)(built)
            return target.lower(built, workdir)

        return lower

    def nncf_quantize(workdir: Path) -> Artifact:
        nncf = _nncf()
        ov_model, onnx_path = _read(target, model, workdir)
        model_type = nncf.ModelType.TRANSFORMER if structure.layers else None
        with quiet(streams=True):
            quantized = nncf.quantize(
                ov_model, nncf.Dataset(list(batches)), model_type=model_type, subset_size=sum(len(next(iter(b.values()))) for b in batches)
            )  # fmt: skip
        onnx_path.unlink()  # the FP32 ONNX is not what this artifact runs
        return target.save_native(quantized, workdir, None, precision)

    def nncf_weights(workdir: Path) -> Artifact:
        nncf = _nncf()
        ov_model, onnx_path = _read(target, model, workdir)
        with quiet(streams=True):
            compressed = nncf.compress_weights(ov_model)  # INT8 asymmetric, every MatMul/Gather weight
        onnx_path.unlink()
        return target.save_native(compressed, workdir, None, precision)

    baselines: dict[str, Callable[[Path], Artifact]] = {}
    if precision != "fp32":
        baselines[f"OpenVINO default ({precision})"] = at_default(lambda: model.clone())
    baselines["NNCF INT8" + (" (transformer)" if structure.layers else "")] = nncf_quantize
    baselines["NNCF INT8 weights"] = nncf_weights
    baselines["ORT static INT8"] = at_default(lambda: ort_static(model, batches))
    return baselines
