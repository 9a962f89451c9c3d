"""SimQ: a hardware-aware model compiler.

SimQ lowers a trained network to an ONNX-derived IR, searches jointly for a smaller
sub-network and a per-node quantization policy for one hardware target, and emits the
Pareto-optimal compiled artifacts.
"""

from simq.errors import SimqError

__all__ = ["SimqError", "__version__"]

__version__ = "0.1.0"
