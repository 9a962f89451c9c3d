"""Refitting a classifier's linear head on a pruned model's own features.

Pruning (and the INT8 that follows it) moves the features a classifier's head reads; the head was
fit to the unpruned model's. Refit on the candidate's own features of labelled training rows, it
takes back much of what the features lost (docs/HEADREFIT.md). The rows are the data's train
split, which no score is taken on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from simq.passes._contracts import require_unquantized
from simq.passes._taps import tapped_runs

__all__ = ["Head", "HeadRows", "SetHeadPass", "find_head", "fit_head"]

#: Inverse regularisation strengths the refit chooses from (by cross-validation on its rows), on
#: standardised features, tried in this order (`_strength`).
STRENGTHS = (0.001, 0.01, 0.1, 1.0, 10.0)
#: Folds of that cross-validation.
FOLDS = 3
#: A feature whose spread on the rows is below this share of the median feature's is not
#: standardised (`fit_head`).
CONSTANT = 1e-3


@dataclass(frozen=True)
class Head:
    """The linear layer that computes a classifier's logits (the model's first output).

    Attributes:
        node: The Gemm or MatMul.
        features: The value it reads: ``[batch, features]``.
        weight: Its constant weight, ``[features, classes]`` (``[classes, features]`` when
            `transposed`, as a Gemm with ``transB=1`` stores it).
        bias: The constant bias (Gemm's third input, or the Add after a MatMul), or None.
        bias_node: The node whose input `bias` is.
    """

    node: str
    features: str
    weight: str
    transposed: bool
    bias: str | None
    bias_node: str | None


def _const(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def find_head(model: ir.Model) -> Head | None:
    """The float linear head behind `model`'s first output, or None when it has none: a Gemm
    (alpha = beta = 1, A not transposed) or a MatMul, optionally plus a constant bias, with a
    constant 2-D weight and 2-D ``[batch, features]`` input."""
    if not model.graph.outputs:
        return None
    node = model.graph.outputs[0].producer()
    bias = bias_node = None
    if node is not None and node.op_type == "Add":
        product = next((i.producer() for i in node.inputs if i is not None and i.producer() is not None), None)
        constant = next((i for i in node.inputs if _const(i)), None)
        if product is None or constant is None or product.op_type != "MatMul" or len(constant.shape) != 1:
            return None
        bias, bias_node, node = constant.name, node.name, product
    if node is None or node.op_type not in ("Gemm", "MatMul") or not _const(node.inputs[1]):
        return None
    attrs = {name: attr.value for name, attr in node.attributes.items()}
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            if not _const(node.inputs[2]) or len(node.inputs[2].shape) != 1:
                return None
            bias, bias_node = node.inputs[2].name, node.name
    features = node.inputs[0]
    if features is None or features.shape is None or len(features.shape) != 2 or len(node.inputs[1].shape) != 2:
        return None
    return Head(node.name, features.name, node.inputs[1].name, bool(attrs.get("transB", 0)), bias, bias_node)


@dataclass(frozen=True)
class HeadRows:
    """The labelled rows a head is refit on: model inputs in batches, and a label per row."""

    batches: Sequence[Mapping[str, np.ndarray]]
    labels: np.ndarray


def features_of(model: ir.Model, head: Head, rows: HeadRows) -> np.ndarray | None:
    """The head's input on every row, as `model` (pruned, fused, quantized or not) computes it;
    None when `model` no longer has that value."""
    if not any(v.name == head.features for n in model.graph for v in n.outputs):
        return None
    return np.concatenate([np.asarray(taps[head.features], np.float64) for _, taps in tapped_runs(model, [head.features], rows.batches)])


def fit_head(features: np.ndarray, labels: np.ndarray, classes: int, *, bias: bool = True) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A multinomial logistic regression from `features` to `labels`, its strength chosen by
    cross-validation on the rows (`_strength`), as ``(weight [features, classes], bias [classes])``
    acting on the raw features (the standardisation folded in; without `bias`, features are
    scaled but not centred and the bias is None); None when a class has fewer rows than folds."""
    counts = np.bincount(labels, minlength=classes)
    if len(counts) != classes or counts.min() < FOLDS:
        return None
    mean = features.mean(axis=0) if bias else np.zeros(features.shape[1])
    scale = features.std(axis=0)
    # A feature that barely varies on the rows (pruning can leave some) is left unscaled: divided
    # by its spread, its weight would amplify the noise it holds elsewhere by as much.
    scale[scale < CONSTANT * np.median(scale)] = 1.0
    standard = (features - mean) / scale
    with warnings.catch_warnings():  # scikit-learn announces changes to defaults these calls do not rely on
        warnings.simplefilter("ignore", FutureWarning)
        model = _logistic(_strength(standard, labels, bias), bias).fit(standard, labels)
    coef, intercept = model.coef_, np.atleast_1d(model.intercept_)
    if classes == 2:  # one score for class 1: logits (-z/2, z/2) rank and normalise the same
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight = (coef / scale).T
    return weight, (intercept - mean @ weight if bias else None)


def _strength(features: np.ndarray, labels: np.ndarray, bias: bool) -> float:
    """The strength in `STRENGTHS` with the lowest log-loss in `FOLDS`-fold cross-validation,
    tried from the most regularised up and stopping at the first that does worse than the one
    before (the loss is taken to have one minimum along them): weakly regularised fits on
    hundreds of features are the slow ones, and large models need none of them (minilm's choose
    0.01; the small digits models 1 or 10)."""
    from sklearn.model_selection import cross_val_score

    best, best_loss = STRENGTHS[0], np.inf
    for strength in STRENGTHS:
        loss = -cross_val_score(_logistic(strength, bias), features, labels, cv=FOLDS, scoring="neg_log_loss").mean()
        if loss >= best_loss:
            break
        best, best_loss = strength, loss
    return best


def _logistic(strength: float, bias: bool):
    """The (unfitted) multinomial logistic regression a refit fits, at inverse strength `strength`."""
    from sklearn.linear_model import LogisticRegression  # scikit-learn loads in a second; only a refit needs it

    return LogisticRegression(C=strength, max_iter=2000, fit_intercept=bias)


class SetHeadPass(ir.passes.InPlacePass):
    """Replaces the head's weight and bias (`find_head` on the model it receives) with a refit's.

    Runs after pruning (which may narrow the head's input) and before quantization.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def requires(self, model: ir.Model) -> None:
        require_unquantized(model, "SetHeadPass")
        head = find_head(model)
        if head is None:
            raise ir.passes.PreconditionError("SetHeadPass: the model's first output is not computed by a linear head.")
        width = next(n for n in model.graph if n.name == head.node).inputs[1].shape[1 if head.transposed else 0]
        if width != self.weight.shape[0]:
            raise ir.passes.PreconditionError(f"SetHeadPass: the head reads {width} features, the refit {self.weight.shape[0]}.")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        head = find_head(model)
        assert head is not None  # requires() checked
        node = next(n for n in model.graph if n.name == head.node)
        weight = node.inputs[1]
        _set(weight, self.weight.T if head.transposed else self.weight)
        if head.bias is not None and self.bias is not None:
            owner = node if head.bias_node == node.name else next(n for n in model.graph if n.name == head.bias_node)
            _set(next(v for v in owner.inputs if v is not None and v.name == head.bias), self.bias)
        return ir.passes.PassResult(model, True)


def _set(value: ir.Value, array: np.ndarray) -> None:
    """Give a constant new contents of its shape and type (on this model only: a clone's values
    are its own)."""
    value.const_value = ir.tensor(array.astype(value.const_value.numpy().dtype), name=value.name)
