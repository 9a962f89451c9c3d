"""The objectives a compile run can minimise or bound, in one table.

Every objective reads a record in one normalised, lower-is-better unit (accuracy: points below the
accuracy reference; latency and size: ratios to the FP32 reference), always from the end-of-run
value where there is one, else the search's, else derived (`value`). The search loop, the
constraints, the report, its plots and the CLI all go through this table: adding an objective is
one entry (with `measure` if the metric is new) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from simq.search._store import Record

__all__ = ["OBJECTIVES", "Objective", "References", "metric"]


@dataclass(frozen=True)
class References:
    """What normalised values are relative to: the FP32 reference (latency, size), and the record
    accuracy drops are measured from (the FP32 reference, or the model before tuning)."""

    fp32: Record
    accuracy: Record


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
    """

    name: str
    label: str
    normalised: Callable[[Record, References, bool], float | None]
    measure: Callable[[Any], float] | None = None
    needs_evaluator: bool = False
    hv_bound: float = 1.0

    def value(self, record: Record, references: References, final: bool = False) -> float | None:
        return None if record.status != "ok" else self.normalised(record, references, final)


def _accuracy_drop(record: Record, refs: References, final: bool) -> float | None:
    # The end-of-run score where both have one, else both from the search: never mixed.
    both_final = final and "accuracy" in record.final and "accuracy" in refs.accuracy.final
    score, reference = metric(record, "accuracy", both_final), metric(refs.accuracy, "accuracy", both_final)
    return None if score is None or reference is None else reference - score


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
    "accuracy": Objective("accuracy", "{score} drop (points)", _accuracy_drop, needs_evaluator=True),
    "latency": Objective("latency", "latency / FP32", _latency_ratio),
    "size": Objective("size", "size / FP32", _size_ratio),
})  # fmt: skip
