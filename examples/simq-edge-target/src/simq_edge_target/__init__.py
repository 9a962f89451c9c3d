"""A small edge CPU, approximated by ONNX Runtime on one thread."""

from simq.targets.ort_cpu import OrtCpuTarget

__all__ = ["EdgeCpuTarget"]


class EdgeCpuTarget(OrtCpuTarget):
    """ONNX Runtime's CPU provider on a single core: what a small edge device gives a model."""

    name = "edge-cpu"

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads=1)  # the device has one core, whatever the caller asks
