"""Expected models for pass tests: removing a unit equals silencing it in the original."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def zero_along(model: ir.Model, tensor: str, axis: int, indices: np.ndarray) -> None:
    """Zero `indices` along `axis` of an initializer, in place (a fresh copy's own tensor)."""
    value = model.graph.initializers[tensor]
    data = value.const_value.numpy().copy()
    index = [slice(None)] * data.ndim
    index[axis] = indices
    data[tuple(index)] = 0
    value.const_value = ir.tensor(data, name=tensor)
