"""ResidualBiasIntoMatMul: a residual Sum's bias handed to the quantized MatMul that feeds it.

`SkipLayerNormAsSum` writes a fused residual layer norm as ``Sum(x, skip, bias)``: on ONNX
Runtime's CPU provider a three-input Sum with a broadcast bias costs about twice a plain one (AVX2
EPYC, 64 x 384, twelve layers: 59 µs against 40 per layer, a LayerNormalization included). Where
``x`` comes out of a kernel that adds a bias for free (DynamicQuantizeMatMul and MatMulNBits,
which ORT fuses from the dynamic-INT8 and INT4-weight forms SimQ writes, with an ``Add`` of a
per-column constant right behind them), ``Sum(Add(x, bias), skip)`` computes the same and ORT
folds the Add into the kernel when it loads the model. Static-INT8 (QDQ) and float MatMuls are
left alone: there ORT would fuse the Add into a float Gemm instead.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

__all__ = ["ResidualBiasIntoMatMul", "ResidualBiasIntoMatMulPass", "residual_bias_rules"]


def _made_by(value: ir.Value | None, op_type: str) -> ir.Node | None:
    """The node of type `op_type` that produces `value`, if one does."""
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op_type else None


def _takes_bias(value: ir.Value) -> bool:
    """Whether `value` is all an integer MatMul computes, in a form ONNX Runtime fuses with an
    ``Add`` of a bias behind it: the rescale of DynamicQuantizeLinear + MatMulInteger, or a MatMul
    by an INT4 weight dequantized in the graph."""
    if len(value.uses()) != 1 or value.is_graph_output():
        return False
    if rescale := _made_by(value, "Mul"):  # Mul(Cast(MatMulInteger(...)), scales)
        return any(_made_by(cast.inputs[0], "MatMulInteger") for v in rescale.inputs if (cast := _made_by(v, "Cast")))
    if matmul := _made_by(value, "MatMul"):
        activation, weight = matmul.inputs
        dequantized = _made_by(weight, "DequantizeLinear")
        int4 = dequantized is not None and dequantized.inputs[0].const_value is not None and dequantized.inputs[0].dtype == ir.DataType.INT4
        return int4 and _made_by(activation, "DequantizeLinear") is None  # a static-INT8 activation: QDQ, left alone
    return False


class ResidualBiasIntoMatMul(pattern.RewriteRuleClassBase):
    """``Sum(x, skip, bias)`` → ``Sum(Add(x, bias), skip)`` where `x` is an integer MatMul's
    output that nothing else reads and `bias` one constant per column (`matmul_first`: which of
    the Sum's first two inputs is the MatMul)."""

    def __init__(self, matmul_first: bool) -> None:
        super().__init__(f"residual_bias_into_matmul_{'first' if matmul_first else 'second'}")
        self.matmul_first = matmul_first

    def pattern(self, op, matmul, skip, bias):
        return op.Sum(matmul, skip, bias) if self.matmul_first else op.Sum(skip, matmul, bias)

    def check(self, op, matmul, skip, bias, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if bias.const_value is None or len(bias.const_value.shape) != 1:
            return result.fail("the bias is not a constant vector.")
        if matmul.shape is None or not matmul.shape.rank() or matmul.shape[-1] != bias.const_value.shape[0]:
            return result.fail("the bias is not one value per column of the MatMul.")
        if not _takes_bias(matmul):
            return result.fail("no integer MatMul that adds a bias in its kernel feeds the Sum.")
        return result

    def rewrite(self, op, matmul, skip, bias, **_):
        return op.Sum(op.Add(matmul, bias), skip)


def residual_bias_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([ResidualBiasIntoMatMul.rule(True), ResidualBiasIntoMatMul.rule(False)])


class ResidualBiasIntoMatMulPass(ir.passes.InPlacePass):
    """Moves every residual Sum's bias behind the dynamic-INT8 or INT4-weight MatMul that feeds
    it (`ResidualBiasIntoMatMul`); run on the quantized model.

    Changes: adds an ``Add`` per moved bias, which ONNX Runtime folds into the MatMul's kernel;
    the model computes the same outputs.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        count = residual_bias_rules().apply_to_model(model)
        return ir.passes.PassResult(model, bool(count))
