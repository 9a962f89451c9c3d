"""Per-node quantization: FP32, static INT8 (QDQ) or INT4 weights, with calibration done once."""

from simq.passes.quant._baselines import ort_dynamic, ort_static
from simq.passes.quant._calibration import Calibration, TensorRange, calibrate
from simq.passes.quant._pipeline import quantize
from simq.passes.quant._sensitivity import sensitivity
from simq.passes.quant.quantize import INT4_BLOCK, PRECISIONS, QuantizePass, quant_knob

__all__ = [
    "INT4_BLOCK",
    "PRECISIONS",
    "Calibration",
    "QuantizePass",
    "TensorRange",
    "calibrate",
    "ort_dynamic",
    "ort_static",
    "quant_knob",
    "quantize",
    "sensitivity",
]
