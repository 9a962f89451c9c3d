"""Evaluators: how good a candidate is, as one number where higher is better.

Scores are in points: accuracy in percent on labelled data, top-1 agreement with the FP32 model
in percent for a classifier on data without labels, fidelity as the mean output cosine to the
FP32 model in percent (100 = identical), or whatever a user evaluator returns. A
constraint such as "at most 1 point below the reference" reads the same for all of them, and is
judged paired, example by example, where the evaluator gives per-example scores (`paired_drop`).
Evaluators score the artifact as its target's runtime runs it.
"""

from simq.eval._evaluators import (
    AccuracyEvaluator,
    AgreementEvaluator,
    Evaluator,
    FidelityEvaluator,
    Run,
    Score,
    classifier_logits,
    onnx_runner,
    padding_mask,
)
from simq.eval._early import BEYOND, WITHIN, EarlyStopping
from simq.eval._paired import DEFAULT_CONFIDENCE, PairedDrop, default_confidence, paired_drop, resolvable_drop
from simq.eval._user import UserEvaluator, load_evaluator

__all__ = [
    "BEYOND", "DEFAULT_CONFIDENCE", "WITHIN", "AccuracyEvaluator", "AgreementEvaluator", "EarlyStopping", "Evaluator", "FidelityEvaluator", "PairedDrop", "Run",
    "Score", "UserEvaluator", "classifier_logits", "default_confidence", "load_evaluator", "onnx_runner", "padding_mask", "paired_drop",
    "resolvable_drop",
]  # fmt: skip
