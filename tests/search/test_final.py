"""The final pass: which models it re-times before the published front is chosen, and that the
front is chosen on those timings, not on the search's labels."""

from __future__ import annotations

import numpy as np

from simq.search import OBJECTIVES, CompileOptions, Goal, JobSpec, Record, References, Store, compile_model, prepare_job
from simq.search._evaluate import InProcessExecutor, ModelEvaluator
from simq.search._final import CONTENDERS_PER_MODEL, contenders, publish

GOAL = Goal(("accuracy", "latency", "accuracy@limit"), (0, 1), {2: 1.0})


def _record(id: int, accuracy: float, ratio: float, kind: str = "candidate") -> Record:
    metrics = {"accuracy": accuracy, "latency_ratio": ratio}
    return Record(id, {}, kind, "ok", None, metrics, {}, None, "fp", None, 1.0, {}, None, {})


def _ids(records: list[Record], limit: int = 2) -> list[int]:
    reference = records[0]
    return [r.id for r in contenders(records, References(reference, reference), GOAL, OBJECTIVES, limit, keep_slower=False)]


def test_a_model_whose_label_is_within_the_margin_of_the_front_is_re_timed():
    """The AMX Xeon's openvino-cpu run: #13's label (0.328x) left its twin #14 (0.357x, as
    accurate) off the front, and #13 read 0.402x in the final pass."""
    records = [_record(1, 80.0, 1.0, "reference"), _record(13, 79.6, 0.328), _record(14, 79.6, 0.357), _record(20, 79.6, 0.50)]
    assert _ids(records) == [1, 13, 14]  # the label front first, then its near miss; #20 is 34 % behind
    beyond = [*records[:3], _record(15, 79.7, 0.30)]  # #15 puts #13 9 % behind the front, #14 16 %
    assert _ids(beyond) == [1, 15, 13]


def test_the_limit_and_the_fp32_cut_are_loosened_by_the_margin_only_for_latency():
    records = [
        _record(1, 80.0, 1.0, "reference"), _record(2, 79.5, 0.5),
        _record(3, 80.0, 1.1),  # as accurate as FP32, its label 10 % slower: could be faster than FP32
        _record(4, 77.0, 0.2),  # 3 points below FP32: never
    ]  # fmt: skip
    assert _ids(records) == [1, 2, 3]


def test_contenders_are_at_most_a_few_per_published_model_the_closest_first():
    records = [_record(1, 80.0, 1.0, "reference"), _record(2, 79.5, 0.5)]
    records += [_record(10 + k, 79.5, 0.5 * (1 + 0.01 * (k + 1))) for k in range(10)]
    assert CONTENDERS_PER_MODEL == 3 and _ids(records, limit=1) == [2, 1, 10, 11]  # FP32 too: the unit, never re-timed
    # Without latency among the objectives, nothing is timed to choose the front: the front alone.
    by_accuracy = Goal(("accuracy", "accuracy@limit"), (0,), {1: 1.0})
    chosen = contenders(records, References(records[0], records[0]), by_accuracy, OBJECTIVES, 1, keep_slower=False)
    assert [r.id for r in chosen] == [1]


def test_the_front_is_chosen_on_the_final_pass_timings_which_are_stored(zoo, tmp_path):
    """`publish` times the whole pool and hands it, relabelled with those timings, to the choice;
    only the chosen are written out, the others' timings kept in the store."""
    job = prepare_job(JobSpec(model="zoo:digits-cnn", baselines=False, cache_dir=zoo.cache_dir), zoo).job
    options = CompileOptions(budget=4, population=2, final_models=1).resolved(job.evaluator, False)
    out = tmp_path / "out"
    result = compile_model(job, options, out)
    store = Store(out / Store.FILENAME)
    try:
        pool = [r for r in store.records("candidate") if r.status == "ok"]
        assert len(pool) >= 2
        seen: dict[int, float] = {}

        def slowest(timed: list[Record]) -> list[Record]:
            seen.update((r.id, r.metrics["latency_ratio"]) for r in timed)
            return [max(timed, key=lambda r: r.metrics["latency_ratio"])]

        (out / "work").mkdir()
        evaluator = ModelEvaluator(job, options, out / "work", store, job.target.fingerprint().key())
        front = publish(evaluator, InProcessExecutor(), out, pool, slowest, result.reference, [], lambda *args: None)
        chosen = max(seen, key=seen.get)
        assert [r.id for r in front] == [chosen] and [p.name for p in (out / "pareto").iterdir()] == [str(chosen)]
        stored = {r.id: r for r in store.records()}
        assert all(stored[i].final["latency_ratio"] == ratio for i, ratio in seen.items())
        assert all(stored[i].metrics["latency_ratio"] == r.metrics["latency_ratio"] for i, r in ((r.id, r) for r in pool))  # labels kept
        assert stored[chosen].artifact and not any(stored[i].artifact for i in seen if i != chosen)
        assert np.isfinite(stored[chosen].final["accuracy"]) and "accuracy" not in stored[min(seen, key=seen.get)].final
    finally:
        store.close()
