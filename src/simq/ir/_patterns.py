"""Small graph queries shared by the analyses: constants, projections, elementwise walks."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from simq.ir._structure import Linear

__all__ = [
    "ELEMENTWISE_UNARY",
    "const",
    "dynamic_inputs",
    "is_scalar_const",
    "linear_at",
    "single_consumer",
]

#: Ops that act on each element independently and keep the shape of their (first) input.
ELEMENTWISE_UNARY = frozenset(
    {
        "Relu", "Gelu", "Erf", "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu",
        "Selu", "Softplus", "Mish", "Clip", "Sqrt", "Exp", "Abs", "Neg", "Identity", "Dropout", "Cast",
        "Add", "Sub", "Mul", "Div", "Pow",
    }
)  # fmt: skip


def const(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant data, or None for activations."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def is_scalar_const(value: ir.Value | None) -> bool:
    data = const(value)
    return data is not None and data.size == 1


def dynamic_inputs(node: ir.Node) -> list[ir.Value]:
    """Inputs that are activations (not constants, not omitted)."""
    return [v for v in node.inputs if v is not None and v.const_value is None]


def single_consumer(value: ir.Value) -> ir.Node | None:
    """The only node that reads `value`, or None if there are zero or several (or it is an output)."""
    users = {use.node for use in value.uses()}
    if len(users) != 1 or value.is_graph_output():
        return None
    return next(iter(users))


def linear_at(node: ir.Node) -> Linear | None:
    """Describe `node` as a projection if it is a MatMul/Gemm by a constant 2-D weight.

    A MatMul's bias is the constant operand of an Add that is the MatMul's only consumer.
    """
    if node.op_type == "MatMul":
        weight = node.inputs[1]
        data = const(weight)
        if data is None or data.ndim != 2 or node.inputs[0] is None or node.inputs[0].const_value is not None:
            return None
        in_features, out_features = data.shape
        layout = "in_out"
        bias, bias_node, output = None, None, node.outputs[0]
        add = single_consumer(node.outputs[0])
        if add is not None and add.op_type == "Add":
            other = add.inputs[1] if add.inputs[0] is node.outputs[0] else add.inputs[0]
            bias_data = const(other)
            if bias_data is not None and bias_data.shape == (out_features,):
                bias, bias_node, output = other, add, add.outputs[0]
    elif node.op_type == "Gemm":
        weight = node.inputs[1]
        data = const(weight)
        attrs = node.attributes
        if data is None or data.ndim != 2 or attrs.get_int("transA", 0):
            return None
        trans_b = attrs.get_int("transB", 0)
        out_features, in_features = data.shape if trans_b else data.shape[::-1]
        layout = "out_in" if trans_b else "in_out"
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        bias_data = const(bias)
        if bias is not None and (bias_data is None or bias_data.shape != (out_features,)):
            return None  # a broadcast or activation "bias" is not a per-feature bias
        bias_node, output = None, node.outputs[0]
    else:
        return None
    return Linear(
        node=node.name,
        weight=weight.name,
        weight_layout=layout,
        in_features=int(in_features),
        out_features=int(out_features),
        bias=bias.name if bias is not None else None,
        bias_node=bias_node.name if bias_node is not None else None,
        output=output.name,
    )
