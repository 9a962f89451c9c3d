"""The objectives a compile run can minimise or bound, in one table.

Every objective reads a record in one normalised, lower-is-better unit (accuracy: points below the
accuracy reference; latency and size: ratios to the FP32 reference), always from the end-of-run
value where there is one, else the search's, else derived (`value`). A limit on an objective is
checked against its `limited` value: for accuracy, the upper confidence bound of the drop judged
paired on the same examples (`simq.eval.paired_drop`), so that "at most one point worse" holds
on new data, not just on the split that chose the model. The search loop, the constraints, the
report, its plots and the CLI all go through this table: adding an objective is one entry (with
`measure` if the metric is new) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from simq.eval import DEFAULT_CONFIDENCE, PairedDrop, paired_drop
from simq.search._store import FINAL, SEARCH, Record

__all__ = ["LIMITED", "OBJECTIVES", "Objective", "References", "accuracy_drop", "metric", "normalised_values", "tracked_values"]

#: Suffix of a tracked metric that is an objective's limited value (``accuracy@limit``).
LIMITED = "@limit"


@dataclass(frozen=True)
class References:
    """What normalised values are relative to: the FP32 reference (latency, size), the record
    accuracy drops are measured from (the FP32 reference, or the model before tuning), and the
    confidence of an accuracy limit."""

    fp32: Record
    accuracy: Record
    confidence: float = DEFAULT_CONFIDENCE


def metric(record: Record, name: str, final: bool = True) -> float | None:
    """A record's metric: its end-of-run value where it has one (and `final`), else the search's."""
    if final and name in record.final:
        return record.final[name]
    return record.metrics.get(name)


@dataclass(frozen=True)
class Objective:
    """One objective.

    Attributes:
        name: What users write in ``--objectives``.
        label: Column and axis title (``{score}`` is replaced by the evaluator's name).
        normalised: ``(record, references, final) -> value`` in the lower-is-better unit, or None
            when the record lacks what it needs.
        measure: For an objective whose metric nothing else measures: ``(artifact) -> float``,
            stored under `name` for every evaluated model.
        needs_evaluator: Whether the score of an evaluator is needed.
        hv_bound: The worst value the hypervolume counts (ratios: 1, the FP32 model); accuracy's
            is the accepted drop.
        limited: ``(record, references, final) -> value`` that a limit on this objective is
            checked against, when it is not the value itself.
    """

    name: str
    label: str
    normalised: Callable[[Record, References, bool], float | None]
    measure: Callable[[Any], float] | None = None
    needs_evaluator: bool = False
    hv_bound: float = 1.0
    limited: Callable[[Record, References, bool], float | None] | None = None

    def value(self, record: Record, references: References, final: bool = False) -> float | None:
        return None if record.status != "ok" else self.normalised(record, references, final)

    def limit_value(self, record: Record, references: References, final: bool = False) -> float | None:
        """What a limit on this objective is checked against (the value, unless `limited` says)."""
        if record.status != "ok":
            return None
        return (self.limited or self.normalised)(record, references, final)


def accuracy_drop(record: Record, refs: References, final: bool = False) -> PairedDrop | None:
    """`record`'s drop below the accuracy reference, paired on the same examples where both have
    per-example scores: on the final split where both were scored there (and `final`), else on
    the search's split; never mixed."""
    both_final = final and "accuracy" in record.final and "accuracy" in refs.accuracy.final
    score, reference = metric(record, "accuracy", both_final), metric(refs.accuracy, "accuracy", both_final)
    if score is None or reference is None:
        return None
    role = FINAL if both_final else SEARCH
    mine, theirs = record.per_example.get(role), refs.accuracy.per_example.get(role)
    if mine is not None and theirs is not None and len(mine) != len(theirs):
        mine = theirs = None  # scored on other examples (a resumed run with other data): unpaired
    return paired_drop(theirs, mine, refs.confidence, estimate=reference - score)


def _accuracy_drop(record: Record, refs: References, final: bool) -> float | None:
    drop = accuracy_drop(record, refs, final)
    return None if drop is None else drop.estimate


def _accuracy_bound(record: Record, refs: References, final: bool) -> float | None:
    drop = accuracy_drop(record, refs, final)
    return None if drop is None else drop.bound


def _signal(name: str) -> Callable[[Record, References, bool], float | None]:
    """How far a model's outputs moved from the FP32 model's on the search's split: a signal with
    far more information per example than right/wrong, to rank candidates by (the accuracy limit
    still decides what is published)."""

    def value(record: Record, refs: References, final: bool) -> float | None:
        return 0.0 if record.id == refs.fp32.id else record.metrics.get(name)

    return value


def _latency_ratio(record: Record, refs: References, final: bool) -> float | None:
    ratio = metric(record, "latency_ratio", final)
    if ratio is not None:
        return ratio
    ms, reference = metric(record, "latency_ms", final), metric(refs.fp32, "latency_ms", final)
    return ms / reference if ms is not None and reference else None


def _size_ratio(record: Record, refs: References, final: bool) -> float | None:
    size, reference = record.metrics.get("size_bytes"), refs.fp32.metrics.get("size_bytes")
    return size / reference if size is not None and reference else None


#: The built-in objectives, by name (pass an extended copy as `CompileOptions.objective_table`).
OBJECTIVES: Mapping[str, Objective] = MappingProxyType({
    "accuracy": Objective("accuracy", "{score} drop (points)", _accuracy_drop, needs_evaluator=True, limited=_accuracy_bound),
    "disagreement": Objective("disagreement", "top-1 disagreement with FP32 (%)", _signal("disagreement"), needs_evaluator=True, hv_bound=10.0),
    "divergence": Objective("divergence", "KL divergence from FP32 (millinats)", _signal("divergence"), needs_evaluator=True, hv_bound=100.0),
    "latency": Objective("latency", "latency / FP32", _latency_ratio),
    "size": Objective("size", "size / FP32", _size_ratio),
})  # fmt: skip


def tracked_values(
    table: Mapping[str, Objective], names: Sequence[str], record: Record, references: References, final: bool = False
) -> list[float | None]:
    """A record's values of tracked metrics: objectives by name, and limited values by
    ``NAME@limit`` (what `Goal` limits are checked against)."""
    values = []
    for name in names:
        if name.endswith(LIMITED):
            values.append(table[name[: -len(LIMITED)]].limit_value(record, references, final))
        else:
            values.append(table[name].value(record, references, final))
    return values


def normalised_values(record: Record, references: References, objectives: Sequence[Objective], final: bool = False) -> np.ndarray | None:
    """The record's values of `objectives` (the table's normalised units), or None if it lacks one."""
    values = [o.value(record, references, final) for o in objectives]
    return None if any(v is None for v in values) else np.array(values, dtype=float)
