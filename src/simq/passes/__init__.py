"""Graph transformations as `onnx_ir` passes, each declaring the knobs it exposes to search.

`Pipeline` composes pruning and quantization for one model and target: its knobs are the
search space.
"""

from simq.passes._knobs import Config, Knob, check_config, defaults
from simq.passes._pipeline import Pipeline

__all__ = ["Config", "Knob", "Pipeline", "check_config", "defaults"]
