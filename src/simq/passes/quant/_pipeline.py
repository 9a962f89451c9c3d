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
    *,
    fused: Mapping[int, bool] | None = None,
    reduce_range: bool = False,
    signed_operands: bool = False,
) -> ir.Model:
    """Apply `policy` (``quant.<unit> -> precision``) to `model` in place and clean it up.

    `model` may be the analysed model or a pruned and fused copy of it; see `QuantizePass`.

    Raises:
        InvalidConfigError: A knob names no quantization unit, or a precision the unit or the
            target does not support.
    """
    run_passes([QuantizePass(structure, policy, calibration, supports, fused=fused, reduce_range=reduce_range, signed_operands=signed_operands)], model)
    return cleanup(model)
