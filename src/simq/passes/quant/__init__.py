"""Per-node quantization: FP32, static INT8 (QDQ), dynamic INT8 or INT4 weights, calibrated once."""

from simq.passes.quant._calibration import Calibration, TensorRange, calibrate, calibrate_values
from simq.passes.quant._pipeline import quantize
from simq.passes.quant._rewrites import RECIPES, Recipe
from simq.passes.quant._sensitivity import sensitivity
from simq.passes.quant._units import (
    ATTENTION,
    QuantUnit,
    attention_unit_name,
    fused_attention,
    quant_units,
    takes_int8dyn,
)
from simq.passes.quant.inference_precision import (
    INFERENCE_PRECISION,
    INFERENCE_PRECISION_METADATA,
    WHOLE_MODEL,
    InferencePrecisionPass,
    inference_precision,
)
from simq.passes.quant.quantize import (
    FALLBACK,
    INT4_BLOCK,
    NOTES_METADATA,
    PRECISIONS,
    QuantizePass,
    nearest,
    quant_knob,
)

__all__ = [
    "ATTENTION",
    "FALLBACK",
    "INFERENCE_PRECISION",
    "INFERENCE_PRECISION_METADATA",
    "INT4_BLOCK",
    "NOTES_METADATA",
    "PRECISIONS",
    "WHOLE_MODEL",
    "Calibration",
    "InferencePrecisionPass",
    "QuantUnit",
    "QuantizePass",
    "RECIPES",
    "Recipe",
    "TensorRange",
    "attention_unit_name",
    "calibrate",
    "calibrate_values",
    "fused_attention",
    "inference_precision",
    "nearest",
    "quant_knob",
    "quant_units",
    "quantize",
    "sensitivity",
    "takes_int8dyn",
]
