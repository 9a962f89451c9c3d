"""Applying a quantization policy: the pass, then cleanup."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import onnx_ir as ir

from simq.ir import Structure, cleanup
from simq.passes._run import run_passes
from simq.passes.quant._calibration import Calibration
from simq.passes.quant.quantize import QuantizePass, Supports

__all__ = ["quantize"]


def quantize(
    model: ir.Model,
    structure: Structure,
    policy: Mapping[str, Hashable],
    calibration: Calibration,
    supports: Supports | None = None,
) -> ir.Model:
    """Apply `policy` (``quant.<node> -> precision``) to `model` in place and clean it up.

    Raises:
        InvalidConfigError: A knob names no quantizable node, or a precision the node or the
            target does not support.
    """
    run_passes([QuantizePass(structure, policy, calibration, supports)], model)
    return cleanup(model)
