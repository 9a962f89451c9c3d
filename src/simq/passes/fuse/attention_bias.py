"""Attention bias rules: give a fused Attention the form ONNX Runtime quantizes into QAttention.

onnxscript's attention fusion passes the exporter's additive mask as ``attention_bias`` and
always sets ``qkv_hidden_sizes``; ONNX Runtime quantizes an Attention into QAttention (its
fastest INT8 attention kernel) only without that attribute and without a bias. Two rules:

- `AttentionMaskIndex`: where the bias is nothing but a key padding mask built from a 0/1 model
  input, and Q, K and V are equally wide (also after head pruning), the same node with
  ``mask_index`` computes the same outputs; where it is that mask and a causal one together (a
  text encoder's, as CLIP's), the same node with ``mask_index`` and ``unidirectional=1``.
- `AttentionZeroBias`: where the bias reads no model input's values, only shapes, and is zero
  for every shape, it adds nothing and is dropped. transformers builds such a bias for a model
  without a padding mask (ViT's, CLIP's vision tower: an all-true mask expanded to the batch,
  turned additive by a Where); left in place, it kept every ViT attention in FP32.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from simq.passes.fuse._subgraph import subgraph_session

__all__ = ["AttentionMaskIndex", "AttentionZeroBias", "attention_bias_rules"]

# The two padding masks the bias is checked on: (batch, sequence) with ragged lengths, so that
# a bias that ignored the mask, or the batch, fails the check.
_PROBE_MASKS = (
    np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64),
    np.array([[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], np.int64),
)
# The sizes every symbolic axis takes in turn while a shape-only bias is checked for zeros.
_PROBE_SIZES = (1, 3)
# Masked positions must be at least this negative to vanish in the softmax like ORT's own
# mask_filter_value (-10000).
_MASKED = -1e4


def _inputs_read(value: ir.Value) -> dict[ir.Value, bool]:
    """The graph inputs `value` is computed from (its constant-free cone's leaves), each with
    whether `value` reads its values (some path from it avoids every Shape node) or only its shape."""
    read: dict[ir.Value, bool] = {}
    seen: set[tuple[int, bool]] = set()
    stack = [(value, False)]  # (value, whether the path down to it passes a Shape)
    while stack:
        v, shaped = stack.pop()
        if (id(v), shaped) in seen:
            continue
        seen.add((id(v), shaped))
        if v.is_graph_input():
            read[v] = read.get(v, False) or not shaped
            continue
        producer = v.producer()
        if producer is not None:
            through = shaped or producer.op_type == "Shape"
            stack.extend((i, through) for i in producer.inputs if i is not None and i.const_value is None)
    return read


def _evaluate(bias: ir.Value, sources: list[ir.Value], feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    """The bias computed by ONNX Runtime from `feeds`, or None if its subgraph cannot run."""
    try:
        session = subgraph_session(sources, bias)
        return session.run(None, feeds)[0]
    except Exception:  # any failure means the bias is not the simple mask this rule understands
        return None


def _masks_keys(bias: np.ndarray, mask: np.ndarray, causal: bool) -> bool:
    """Whether `bias` (batch or 1, heads or 1, queries, keys) is the additive form of the key
    padding `mask` (batch, keys), and of the causal mask too if `causal`: 0 where a query may
    read a key, at most -1e4 where it may not."""
    length = mask.shape[1]
    full = np.broadcast_to(bias, (mask.shape[0], bias.shape[1], length, length))
    keep = mask.astype(bool)[:, None, None, :]
    if causal:
        keep = keep & np.tri(length, dtype=bool)[None, None]
    keep = np.broadcast_to(keep, full.shape)
    return bool(np.all(full[keep] == 0) and np.all(full[~keep] <= _MASKED))


def _padding_mask_input(bias: ir.Value) -> tuple[ir.Value, bool] | None:
    """The 2-D 0/1 model input that `bias` is the additive key padding mask of, if it is one,
    and whether the bias is also causal (a query reads no later key).

    Checked by computing the bias for two ragged probe masks: every query row of batch b must
    read 0 where ``mask[b, key] == 1`` (and, causal, ``key <= query``) and at most -1e4 elsewhere.
    """
    sources = list(_inputs_read(bias))
    candidates = [s for s in sources if s.shape is not None and s.shape.rank() == 2 and s.dtype is not None and not s.dtype.is_floating_point()]
    for mask in candidates:
        others = [s for s in sources if s is not mask]
        if any(s.shape is None or s.dtype is None for s in others):
            continue
        outs = []
        for probe in _PROBE_MASKS:
            feeds = {mask.name: probe.astype(mask.dtype.numpy())}
            for s in others:  # other inputs only give sizes (e.g. Shape(input_ids))
                dims = [d if isinstance(d, int) else probe.shape[i] if i < 2 else 1 for i, d in enumerate(s.shape)]
                feeds[s.name] = np.zeros(dims, s.dtype.numpy())
            out = _evaluate(bias, [mask, *others], feeds)
            if out is None or out.ndim != 4 or out.shape[0] not in (1, 2) or out.shape[-1] != probe.shape[1] or out.shape[-2] not in (1, probe.shape[1]):
                break
            outs.append(out)
        else:
            for causal in (False, True):
                if all(_masks_keys(out, probe, causal) for out, probe in zip(outs, _PROBE_MASKS)):
                    return mask, causal
    return None


class _AttentionBiasRule(pattern.RewriteRuleClassBase):
    """A fused Attention with an additive bias and no mask_index or past: what both rules match."""

    def pattern(self, op, input, weight, bias, attention_bias):
        return op.Attention(
            input, weight, bias, None, None, attention_bias,
            _domain="com.microsoft", _allow_other_attributes=True, _outputs=["attention"],
        )  # fmt: skip


class AttentionMaskIndex(_AttentionBiasRule):
    """``Attention(x, W, b, attention_bias=padding_bias(m))`` → ``Attention(x, W, b, mask_index=int32(m))``,
    without ``qkv_hidden_sizes`` (Q, K and V equally wide); a bias that is causal too (a text
    encoder's, CLIP's) becomes the same with ``unidirectional=1``."""

    def __init__(self) -> None:
        super().__init__("attention_mask_index")
        self._masks: dict[int, tuple[ir.Value, bool] | None] = {}

    def check(self, op, attention, attention_bias, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        node = attention.producer()
        sizes = node.attributes.get_ints("qkv_hidden_sizes")
        if sizes is not None and len(set(sizes)) != 1:
            return result.fail(f"Q, K and V differ in width ({sizes}); QAttention needs them equal.")
        if node.attributes.get_int("unidirectional", 0):
            return result.fail("a causal attention keeps its bias.")
        if id(attention_bias) not in self._masks:
            self._masks[id(attention_bias)] = _padding_mask_input(attention_bias)
        if self._masks[id(attention_bias)] is None:
            return result.fail("the attention bias is not a key padding mask of a 0/1 model input.", attention_bias)
        return result

    def rewrite(self, op, input, weight, bias, attention_bias, attention, **_):
        node = attention.producer()
        padding, causal = self._masks[id(attention_bias)]
        attributes = {k: a.value for k, a in node.attributes.items() if k != "qkv_hidden_sizes"}
        if causal:
            attributes["unidirectional"] = 1
        return op.Attention(input, weight, bias, op.Cast(padding, to=ir.DataType.INT32), _domain="com.microsoft", **attributes)


def always_zero(bias: ir.Value) -> bool:
    """Whether `bias` is zero whatever the model's inputs: it reads their shapes only, and is
    all zeros computed for two sizes of every symbolic axis."""
    read = _inputs_read(bias)
    sources = list(read)
    if any(read.values()) or any(s.shape is None or s.dtype is None for s in sources):
        return False
    for size in _PROBE_SIZES:
        feeds = {s.name: np.zeros([d if isinstance(d, int) else size for d in s.shape], s.dtype.numpy()) for s in sources}
        out = _evaluate(bias, sources, feeds)
        if out is None or not np.all(out == 0):
            return False
    return True


class AttentionZeroBias(_AttentionBiasRule):
    """``Attention(x, W, b, attention_bias=zeros(shape of inputs))`` → ``Attention(x, W, b)``,
    without ``qkv_hidden_sizes`` where Q, K and V are equally wide."""

    def __init__(self) -> None:
        super().__init__("attention_zero_bias")
        self._zero: dict[int, bool] = {}

    def check(self, op, attention_bias, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if id(attention_bias) not in self._zero:
            self._zero[id(attention_bias)] = always_zero(attention_bias)
        if not self._zero[id(attention_bias)]:
            return result.fail("the attention bias reads the inputs' values or is not zero.", attention_bias)
        return result

    def rewrite(self, op, input, weight, bias, attention_bias, attention, **_):
        node = attention.producer()
        sizes = node.attributes.get_ints("qkv_hidden_sizes")
        equal = sizes is not None and len(set(sizes)) == 1
        attributes = {k: a.value for k, a in node.attributes.items() if not (k == "qkv_hidden_sizes" and equal)}
        return op.Attention(input, weight, bias, _domain="com.microsoft", **attributes)


def attention_bias_rules() -> pattern.RewriteRuleSet:
    """A fresh rule set (the rules cache which biases they have checked, per model)."""
    return pattern.RewriteRuleSet([AttentionMaskIndex.rule(), AttentionZeroBias.rule()])
