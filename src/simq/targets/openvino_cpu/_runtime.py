"""The OpenVINO runtime, imported when a target needs it (it is an optional extra)."""

from __future__ import annotations

from typing import Any

from simq.errors import MissingDependencyError

__all__ = ["openvino"]


def openvino() -> Any:
    """The openvino module, or a one-line error saying how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError(
            "the openvino-cpu target needs OpenVINO; install it with: pip install 'simq[openvino]'."
        ) from e
    return openvino
