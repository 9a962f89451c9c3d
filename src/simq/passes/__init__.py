"""Graph transformations as `onnx_ir` passes, each declaring the knobs it exposes to search.

`Pipeline` composes pruning, a target's fusions (its `Lowering`) and quantization for one model
and target: its knobs are the search space.
"""

from simq.passes._contracts import quantized_ops
from simq.passes._knobs import (
    Config,
    Knob,
    channels_knob,
    check_config,
    defaults,
    depth_knob,
    ffn_knob,
    heads_knob,
    is_precision,
    knob_kind,
    quant_knob,
)
from simq.passes._pipeline import Lowering, Pipeline

__all__ = [
    "Config",
    "Knob",
    "Lowering",
    "Pipeline",
    "channels_knob",
    "check_config",
    "defaults",
    "depth_knob",
    "ffn_knob",
    "heads_knob",
    "is_precision",
    "knob_kind",
    "quant_knob",
    "quantized_ops",
]
