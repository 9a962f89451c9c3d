"""Graph transformations as `onnx_ir` passes, each declaring the knobs it exposes to search."""

from simq.passes._knobs import Config, Knob, check_config, defaults

__all__ = ["Config", "Knob", "check_config", "defaults"]
