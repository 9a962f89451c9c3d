"""What passes check of the model they receive and leave (onnx_ir's `requires`/`ensures`): the
order prune -> fuse -> quantize, stated where a pass can check it."""

from __future__ import annotations

import onnx_ir as ir

__all__ = ["QUANTIZED_OPS", "quantized_ops", "require_unquantized"]

#: Ops that only a quantized model holds (QDQ, dynamic quantization, integer kernels).
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QAttention", "DynamicQuantizeMatMul", "MatMulNBits"}
)


def quantized_ops(model: ir.Model) -> list[str]:
    """The quantized op types `model` holds, sorted (none: it is a float model)."""
    return sorted({n.op_type for n in model.graph if n.op_type in QUANTIZED_OPS})


def require_unquantized(model: ir.Model, what: str) -> None:
    """Raise unless `model` is still in float: `what` must run before quantization.

    Raises:
        ir.passes.PreconditionError: Naming the first quantized node.
    """
    node = next((n for n in model.graph if n.op_type in QUANTIZED_OPS), None)
    if node is not None:
        raise ir.passes.PreconditionError(f"{what} runs before quantization; this model is quantized already ({node.op_type} {node.name}).")
