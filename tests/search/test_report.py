"""The one-sentence verdict of a compile run, and the run's table: the best baseline against SimQ's
fastest, both within the accuracy limit as judged paired on the search's examples."""

from __future__ import annotations

import numpy as np
import pytest

from simq.search import Record, References, display_table, headline
from simq.search._report import bar, speedup


def _record(id: int, kind: str, accuracy: float, ratio: float, baseline: str | None = None, per_example=None) -> Record:
    config = {"baseline": baseline} if baseline else {}
    final = {"accuracy": accuracy, "latency_ratio": ratio}
    examples = {} if per_example is None else {"search": np.asarray(per_example, np.float32)}
    return Record(id, config, kind, "ok", None, dict(final), {}, None, "fp", None, 1.0, final, None, examples)


def test_the_fastest_within_the_constraint_on_both_sides():
    reference = _record(1, "reference", 70.0, 1.0)
    baselines = [
        _record(2, "baseline", 69.5, 0.6, "fused + dynamic INT8"),
        _record(3, "baseline", 50.0, 0.4, "static INT8"),  # fast, but 20 points down: not a choice
    ]
    front = [_record(7, "candidate", 69.2, 0.45), _record(8, "candidate", 60.0, 0.2)]
    references = References(reference, reference)
    text = headline(references, baselines, front, 1.0)
    assert text == (
        "Best baseline within 1 point of FP32: fused + dynamic INT8 at 0.60x FP32. "
        "Fastest SimQ model within 1 point of FP32: #7 at 0.45x FP32, 1.33x faster."
    )
    assert "no SimQ model" in headline(references, baselines, front[1:], 1.0)
    # None published within the limit because the one within it ran slower than FP32: said so.
    slower = _record(9, "candidate", 69.8, 1.3)
    assert headline(references, baselines, front[1:], 1.0, [*front[1:], slower]).endswith(
        "1 candidate was within 1 point of FP32 but none ran faster than FP32 (the fastest at 1.30x), and no slower model is published."
    )
    assert "static INT8 at 0.40x" in headline(references, baselines, front, 25.0)
    # Slower than the best baseline: said against it by name, not read as slower than FP32.
    assert headline(references, baselines, [_record(10, "candidate", 69.9, 0.66)], 1.0).endswith(
        "#10 at 0.66x FP32, 1.10x slower than fused + dynamic INT8."
    )


def test_within_the_limit_means_its_paired_upper_bound_is():
    """Two models 0.5 points below the reference on 400 examples: one changes 2 verdicts (a tight
    interval), the other 40 (20 better, 22 worse): its upper bound passes a point."""
    n = 400
    reference_scores = np.full(n, 100.0)
    reference_scores[:100] = 0.0
    steady = reference_scores.copy()
    steady[100:102] = 0.0
    shaky = reference_scores.copy()
    shaky[:20] = 100.0
    shaky[100:122] = 0.0
    reference = _record(1, "reference", 75.0, 1.0, per_example=reference_scores)
    front = [
        _record(5, "candidate", float(steady.mean()), 0.5, per_example=steady),
        _record(6, "candidate", float(shaky.mean()), 0.3, per_example=shaky),
    ]
    text = headline(References(reference, reference, 0.9), [], front, 1.0)
    assert "#5 at 0.50x" in text  # the faster #6 is as good on average, but not within a point with 90 % confidence
    assert "#6" in headline(References(reference, reference, 0.5), [], front, 1.0)  # the point estimate accepts it


def test_a_faster_baseline_the_bound_rejects_is_still_named_when_its_estimate_is_within():
    """The recipe 0.6 points down on average but with a shaky interval: the rule keeps it out of
    "within 1 point", yet a user would pick it; the verdict measures SimQ against it too."""
    n = 400
    reference_scores = np.full(n, 100.0)
    reference_scores[:100] = 0.0
    shaky = reference_scores.copy()
    shaky[:20] = 100.0
    shaky[100:122] = 0.0  # 0.5 down on average, 40 verdicts changed
    reference = _record(1, "reference", 75.0, 1.0, per_example=reference_scores)
    baselines = [_record(2, "baseline", 75.0, 0.85, "optimizer FP32", reference_scores), _record(3, "baseline", float(shaky.mean()), 0.55, "the recipe", shaky)]
    front = [_record(7, "candidate", 75.0, 0.5, per_example=reference_scores)]
    text = headline(References(reference, reference, 0.9), baselines, front, 1.0)
    assert text.startswith("Best baseline within 1 point of FP32: optimizer FP32 at 0.85x FP32.")
    assert "#7 at 0.50x FP32, 1.70x faster." in text
    assert "Against the recipe (0.55x FP32, drop 0.50 on validation but" in text and text.endswith("1.10x faster.")


def test_the_table_shows_each_drop_with_its_interval():
    summary = {
        "score": "accuracy",
        "rows": [
            {"id": 1, "kind": "reference", "baseline": None, "accuracy": 70.0, "accuracy_drop": 0.0, "accuracy_drop_low": 0.0,
             "accuracy_drop_high": 0.0, "latency_ms": 10.0, "latency_ratio": 1.0, "latency_ratio_low": 1.0,
             "latency_ratio_high": 1.0, "size_mb": 90.0, "size_ratio": 1.0, "config": "FP32 reference", "confirmed": "yes"},
            {"id": 7, "kind": "candidate", "baseline": None, "accuracy": 68.0, "accuracy_drop": 2.0, "accuracy_drop_low": 1.2,
             "accuracy_drop_high": 2.8, "latency_ms": 4.0, "latency_ratio": 0.4, "latency_ratio_low": 0.39,
             "latency_ratio_high": 0.41, "size_mb": 20.0, "size_ratio": 0.22, "config": "heads 50%", "confirmed": "beyond the limit"},
        ],
    }  # fmt: skip
    columns, rows = display_table(summary)
    assert columns[1] == "accuracy" and rows[0][-1] == "FP32"
    assert rows[1][2] == "-2.00 (-2.80, -1.20) beyond" and rows[1][4] == "0.400 (0.390–0.410)"
    assert not any(column.startswith("× faster") for column in columns)  # a run from before the speed-up column

    summary["bar"] = "the recipe"
    summary["rows"][0] |= {"speedup_over_bar": 0.5, "speedup_over_bar_low": None, "speedup_over_bar_high": None}
    summary["rows"][1] |= {"speedup_over_bar": 1.25, "speedup_over_bar_low": 1.2, "speedup_over_bar_high": 1.31}
    columns, rows = display_table(summary)
    assert columns[5] == "× faster than the recipe" and len(rows[1]) == len(columns)
    assert rows[0][5] == "0.50" and rows[1][5] == "1.25 (1.20–1.31)" and rows[1][-1] == "heads 50%"

    from rich.console import Console

    from simq.cli._common import render_table

    summary["bar"] = "ORT optimizer + dynamic INT8 with a long name"
    summary["rows"][1]["config"] = "blocks dropped 0/6 · heads 50% · FFN 50% · int8dyn 25 int8 2"
    console = Console(width=200, record=True)  # a log's width (table_console)
    console.print(render_table(summary, "run"))
    shown = console.export_text()
    assert "ORT optimizer + dynamic INT8 with a long name" not in shown  # the header wraps over lines
    assert summary["rows"][1]["config"] in shown  # so the configuration does not


def test_a_bounded_front_keeps_the_fastest_and_the_most_accurate_model():
    """The tuned minilm-tweets run's feasible front (accuracy, latency ratio, size ratio): by
    hypervolume contribution alone, 8 of its 16 models left out the fastest, the one the headline
    should name, and the most accurate."""
    from simq.search import OBJECTIVES, Goal
    from simq.search._final import select_front

    front = [  # id, accuracy, latency ratio, size ratio
        (35, 69.84, 0.173, 0.162), (25, 70.51, 0.189, 0.178), (32, 71.69, 0.208, 0.175), (23, 70.33, 0.217, 0.173),
        (19, 71.96, 0.231, 0.177), (12, 71.02, 0.267, 0.172), (21, 72.16, 0.279, 0.193), (17, 72.09, 0.283, 0.183),
        (15, 72.71, 0.324, 0.192), (13, 74.09, 0.377, 0.207), (18, 74.27, 0.455, 0.222), (29, 74.69, 0.541, 0.247),
        (8, 75.29, 0.562, 0.252), (33, 74.96, 0.649, 0.248), (31, 75.11, 0.745, 0.166), (10, 74.78, 0.874, 0.159),
    ]  # fmt: skip
    reference = _record(1, "reference", 69.56, 1.0)
    reference.metrics["size_bytes"] = 1.0
    records = [reference]
    for id, accuracy, ratio, size in front:
        records.append(_record(id, "candidate", accuracy, ratio))
        records[-1].metrics["size_bytes"] = size
    goal = Goal(("accuracy", "latency", "size", "accuracy@limit"), (0, 1, 2), {3: 1.0})
    chosen = [r.id for r in select_front(records, References(reference, reference), goal, OBJECTIVES, 8, keep_slower=False)]
    assert len(chosen) == 8
    assert {35, 8, 10} <= set(chosen)  # the fastest, the most accurate, the smallest
    assert [r.id for r in select_front(records, References(reference, reference), goal, OBJECTIVES, 1, keep_slower=False)] == [35]


def test_speed_ups_are_over_the_fastest_baseline_within_the_limit_with_both_intervals():
    reference = _record(1, "reference", 70.0, 1.0)
    recipe, static = _record(2, "baseline", 69.5, 0.5, "the recipe"), _record(3, "baseline", 50.0, 0.4, "static INT8")
    recipe.final.update(latency_ratio_low=0.48, latency_ratio_high=0.52)
    model = _record(7, "candidate", 69.2, 0.25)
    model.final.update(latency_ratio_low=0.24, latency_ratio_high=0.27)
    references = References(reference, reference)
    assert bar(references, [recipe, static], 1.0) is recipe  # static INT8 is faster, but 20 points down
    assert bar(references, [recipe, static], None) is static  # without a limit, the fastest of all
    times, low, high = speedup(recipe, model)
    assert times == pytest.approx(2.0) and low == pytest.approx(0.48 / 0.27) and high == pytest.approx(0.52 / 0.24)
    assert speedup(static, model)[1:] == (None, None)  # no interval on the bar's ratio: none on the speed-up
