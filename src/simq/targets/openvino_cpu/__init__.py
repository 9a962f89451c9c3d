"""OpenVINO's CPU plugin as a target."""

from simq.targets.openvino_cpu._target import OpenVinoCpuTarget

__all__ = ["OpenVinoCpuTarget"]
