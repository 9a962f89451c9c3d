"""MHA form rules: write an exported attention the way OpenVINO's CPU plugin fuses it.

The CPU plugin fuses ``MatMul(Q, Kᵀ) → [Add mask] → Softmax → MatMul(·, V)`` with its Transposes
(and the FakeQuantize of an INT8 model) into one MHA kernel when it compiles. The PyTorch dynamo
exporter writes transformers' SDPA attention with three things in the way:

- `SoftmaxNanGuard`: ``Where(IsNaN(p), 0, p)`` behind the Softmax, which only ever fires when a
  row's scores are all -inf. Where the scores' only addend is a finite mask (transformers fills
  masked positions with the dtype's lowest finite value), no row can be, and ``p`` is the same.
- `ZeroScoreBias`: a model without a padding mask (ViT's) still adds a bias to its scores that
  transformers builds from an all-true mask: zero for every input, computed on every call.
- `KeyTransposeChain`: Kᵀ written as ``Reshape(Transpose(Reshape(K, [-1, S, D]), [0, 2, 1]),
  [B, H, D, S])``, which is ``Transpose(K, [0, 1, 3, 2])``; where ``K`` is itself a Transpose,
  one Transpose of its input.

minilm-tweets INT8 on an AMX Xeon (docs/MHA_FORM.md): the six attentions fused into one kernel
each once the guard and the chain are rewritten, 0.88x NNCF INT8's time at heads = FFN 75 %.
ONNX Runtime is not given these rules: its own fusion turns the same graph into its Attention kernel.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter import pattern

from simq.passes._contracts import require_unquantized
from simq.passes.fuse._subgraph import subgraph_session
from simq.passes.fuse.attention_bias import always_zero

__all__ = ["KeyTransposeChain", "MhaFormPass", "SoftmaxNanGuard", "ZeroScoreBias", "mha_form_rules"]

# Sizes (batch, heads, sequence, head size) the Kᵀ chain is checked on where the keys' own are
# symbolic: distinct, so a chain that swapped other axes, or read a size from the wrong one, fails.
_PROBE_SHAPES = ((2, 3, 5, 7), (1, 4, 6, 2))
# Kᵀ: the last two axes swapped.
_SWAP_LAST = (0, 1, 3, 2)


def _constant(value: ir.Value | None) -> np.ndarray | None:
    return value.const_value.numpy() if value is not None and value.const_value is not None else None


def _finite_mask(value: ir.Value) -> bool:
    """Whether `value` is a constant, or ``Where(condition, a, b)`` of two constants, all finite."""
    if (array := _constant(value)) is not None:
        return bool(np.all(np.isfinite(array)))
    node = value.producer()
    if node is None or node.op_type != "Where":
        return False
    branches = [_constant(v) for v in node.inputs[1:]]
    return all(b is not None and bool(np.all(np.isfinite(b))) for b in branches)


def _finite_row(scores: ir.Value) -> bool:
    """Whether no Softmax row of `scores` can be all -inf: they are a MatMul's, scaled or not, plus
    at most finite masks."""
    node = scores.producer()
    while node is not None and node.op_type == "Identity":  # a bias `ZeroScoreBias` just removed
        node = node.inputs[0].producer()
    while node is not None and node.op_type == "Add":
        masks = [v for v in node.inputs if _finite_mask(v)]
        if len(masks) != 1:
            return False
        node = next(v for v in node.inputs if v is not masks[0]).producer()
    while node is not None and node.op_type in ("Mul", "Div"):
        left, right = node.inputs[:2]
        divisor = _constant(right) if node.op_type == "Div" else None
        if node.op_type == "Div" and divisor is not None and np.all(np.isfinite(divisor)) and np.all(divisor != 0):
            node = left.producer()
        elif node.op_type == "Mul" and (scaled := left if _finite_mask(right) else right if _finite_mask(left) else None) is not None:
            node = scaled.producer()  # scaled by finite values
        else:
            return False
    return node is not None and node.op_type == "MatMul"


class SoftmaxNanGuard(pattern.RewriteRuleClassBase):
    """``Where(IsNaN(p), 0, p)`` with ``p = Softmax(scores)`` → ``p``, where `scores` is a MatMul's
    output plus finite masks only."""

    def pattern(self, op, probabilities, zero):
        return op.Where(op.IsNaN(probabilities), zero, probabilities)

    def check(self, op, probabilities, zero, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        value = _constant(zero)
        if value is None or value.size != 1 or float(value.reshape(-1)[0]) != 0.0:
            return result.fail("the guard does not write zeros.")
        softmax = probabilities.producer()
        if softmax is None or softmax.op_type != "Softmax":
            return result.fail("the guarded value is not a Softmax's.")
        scores = softmax.inputs[0]
        axis = softmax.attributes.get_int("axis", -1)
        if axis != -1 and (scores.shape is None or axis != scores.shape.rank() - 1):
            return result.fail("the Softmax is not over the last axis.")
        if not _finite_row(scores):
            return result.fail("the scores may hold a row of -inf: the guard may fire.", scores)
        return result

    def rewrite(self, op, probabilities, **_):
        return op.Identity(probabilities)


def _swaps_last_two(source: ir.Value, result: ir.Value) -> bool:
    """Whether the subgraph from `source` (rank 4) to `result` is ``Transpose(source, [0, 1, 3, 2])``,
    run by ONNX Runtime on probe tensors of distinct sizes."""
    try:
        session = subgraph_session([source], result)
        for sizes in _PROBE_SHAPES:
            shape = [d if isinstance(d, int) else size for d, size in zip(source.shape, sizes)]  # the known sizes stay
            probe = np.arange(np.prod(shape), dtype=source.dtype.numpy()).reshape(shape)
            out = session.run(None, {source.name: probe})[0]
            if not np.array_equal(out, probe.transpose(_SWAP_LAST)):
                return False
        return True
    except Exception:  # a subgraph that does not run on the probes is not the chain this rule knows
        return False


class KeyTransposeChain(pattern.RewriteRuleClassBase):
    """``Reshape(Transpose(Reshape(k, s1), [0, 2, 1]), s2)`` that swaps `k`'s last two axes →
    ``Transpose(k, [0, 1, 3, 2])``, composed with `k`'s own Transpose where it has one."""

    def __init__(self) -> None:
        super().__init__("key_transpose_chain")
        self._swaps: dict[int, bool] = {}

    def pattern(self, op, k, first, second):
        flat = op.Reshape(k, first, _allow_other_attributes=True)
        return op.Reshape(op.Transpose(flat, _allow_other_attributes=True, _outputs=["swapped"]), second, _allow_other_attributes=True, _outputs=["keys"])

    def check(self, op, k, swapped, keys, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if list(swapped.producer().attributes.get_ints("perm", [])) != [0, 2, 1]:
            return result.fail("the middle Transpose does not swap the last two of three axes.")
        if k.shape is None or k.shape.rank() != 4 or k.dtype is None:
            return result.fail("the keys are not known to be rank 4.")
        if id(keys) not in self._swaps:
            self._swaps[id(keys)] = _swaps_last_two(k, keys)
        if not self._swaps[id(keys)]:
            return result.fail("the chain is not a swap of the last two axes.", keys)
        return result

    def rewrite(self, op, k, **_):
        inner = k.producer()
        if inner is not None and inner.op_type == "Transpose" and inner.attributes.get_ints("perm") is not None:
            perm = list(inner.attributes.get_ints("perm"))
            return op.Transpose(inner.inputs[0], perm=[perm[i] for i in _SWAP_LAST])
        return op.Transpose(k, perm=list(_SWAP_LAST))


class ZeroScoreBias(pattern.RewriteRuleClassBase):
    """``Softmax(Add(scores, bias))`` → ``Softmax(scores)``, where `bias` reads no model input's
    values, only shapes, and is zero for every shape (`always_zero`)."""

    def __init__(self) -> None:
        super().__init__("zero_score_bias")
        self._zero: dict[int, bool] = {}

    def pattern(self, op, scores, bias):
        return op.Add(scores, bias, _outputs=["biased"])

    def check(self, op, scores, bias, biased, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        readers = biased.uses()
        if len(readers) != 1 or readers[0].node.op_type != "Softmax" or biased.is_graph_output():
            return result.fail("the sum is not only a Softmax's input.")
        if bias.const_value is not None or scores.shape is None or bias.shape is None or bias.shape.rank() != scores.shape.rank():
            return result.fail("the bias is a constant, or its rank is not the scores'.")
        if any(b != 1 and b != s for b, s in zip(bias.shape, scores.shape)):
            return result.fail("the bias may broadcast the scores to another shape.")
        if id(bias) not in self._zero:
            self._zero[id(bias)] = always_zero(bias)
        if not self._zero[id(bias)]:
            return result.fail("the bias reads the inputs' values or is not zero.", bias)
        return result

    def rewrite(self, op, scores, **_):
        return op.Identity(scores)


def mha_form_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([ZeroScoreBias.rule(), SoftmaxNanGuard.rule(), KeyTransposeChain.rule()])


class MhaFormPass(ir.passes.InPlacePass):
    """Rewrites every exported attention into the form OpenVINO's CPU plugin fuses into its MHA
    kernel (`ZeroScoreBias`, `SoftmaxNanGuard`, `KeyTransposeChain`), then removes what they left unread.

    Changes: removes the zero biases, NaN guards and Kᵀ chains those rules match; the model computes the same
    outputs for every input without a row of -inf scores (which a finite mask cannot make).
    """

    def requires(self, model: ir.Model) -> None:
        require_unquantized(model, "MhaFormPass")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        count = mha_form_rules().apply_to_model(model)
        if count:
            common.IdentityEliminationPass()(model)
            common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, bool(count))
