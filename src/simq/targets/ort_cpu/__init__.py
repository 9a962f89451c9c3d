"""The ONNX Runtime CPU execution provider as a target."""

from simq.targets.ort_cpu._baselines import RECIPE, ort_baselines, ort_dynamic, ort_optimizer, ort_static
from simq.targets.ort_cpu._target import OrtCpuTarget

__all__ = ["RECIPE", "OrtCpuTarget", "ort_baselines", "ort_dynamic", "ort_optimizer", "ort_static"]
