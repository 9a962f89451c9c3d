"""SkipLayerNormAsSum: a fused SkipLayerNormalization back into Sum + LayerNormalization.

ONNX Runtime's CPU SkipLayerNormalization kernel runs 2.8x slower than a residual add followed by
its LayerNormalization kernel on some CPUs (AVX2 EPYC, hidden 384: 95 µs against 34 µs at 64
tokens, 178 against 55 at 128); the recipe users run keeps twelve of them in MiniLM. ORT fuses
``Add`` + ``LayerNormalization`` back into SkipLayerNormalization when it loads a model, so the
residual is written as ``Sum``, which computes the same and which that fusion does not match.
Whether a CPU wants it is the target's call (measured once per process, see
`simq.targets.ort_cpu`).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

from simq.passes._contracts import require_unquantized

__all__ = ["SkipLayerNormAsSum", "SkipLayerNormAsSumPass", "skip_layer_norm_as_sum_rules"]


class SkipLayerNormAsSum(pattern.RewriteRuleClassBase):
    """``SkipLayerNormalization(x, skip, gamma, beta[, bias])`` → ``LayerNormalization(Sum(x, skip[, bias]), gamma, beta)``,
    where only the normalised output is read."""

    def __init__(self, with_bias: bool) -> None:
        super().__init__(f"skip_layer_norm_as_sum{'_bias' if with_bias else ''}")
        self.with_bias = with_bias

    def pattern(self, op, input, skip, gamma, beta, bias):
        return op.SkipLayerNormalization(
            input, skip, gamma, beta, *([bias] if self.with_bias else []),
            _domain="com.microsoft", _allow_other_attributes=True, _outputs=["normalized"],
        )  # fmt: skip

    def check(self, op, normalized, input, gamma, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        node = normalized.producer()
        if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
            return result.fail("a statistics or sum output is read; only the normalised output can be rewritten.")
        if input.shape is None or gamma.shape is None or gamma.shape.rank() != 1:
            return result.fail("the normalised axis is not known.")
        return result

    def rewrite(self, op, input, skip, gamma, beta, bias, normalized, **_):
        epsilon = normalized.producer().attributes.get_float("epsilon", 1e-12)
        total = op.Sum(input, skip, *([bias] if self.with_bias else []))
        return op.LayerNormalization(total, gamma, beta, axis=-1, epsilon=epsilon)


def skip_layer_norm_as_sum_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([SkipLayerNormAsSum.rule(True), SkipLayerNormAsSum.rule(False)])


class SkipLayerNormAsSumPass(ir.passes.InPlacePass):
    """Rewrites every SkipLayerNormalization whose statistics and sum outputs nobody reads as
    ``Sum`` + ``LayerNormalization`` (`SkipLayerNormAsSum`).

    Changes: replaces those nodes; the model computes the same outputs.
    """

    def requires(self, model: ir.Model) -> None:
        require_unquantized(model, "SkipLayerNormAsSumPass")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        count = skip_layer_norm_as_sum_rules().apply_to_model(model)
        return ir.passes.PassResult(model, bool(count))
