"""The ONNX Runtime CPU execution provider as a target."""

from simq.targets.ort_cpu._target import OrtCpuTarget

__all__ = ["OrtCpuTarget"]
