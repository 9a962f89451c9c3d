"""`simq compile` end to end on tiny zoo models: artifacts, manifests, resume, determinism, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from simq.cli import main
from simq.eval import AccuracyEvaluator
from simq.search import Store

MODEL = "zoo:digits-cnn"


def _args(zoo, out: Path, *extra: str) -> list[str]:
    return ["compile", MODEL, "--cache-dir", str(zoo.cache_dir), "--out", str(out), "--population", "3", *extra]


def _candidates(out: Path) -> list[tuple]:
    with sqlite3.connect(out / Store.FILENAME) as db:
        return db.execute(
            "SELECT id, config_key, metrics, seconds FROM candidates WHERE kind = 'candidate' ORDER BY id"
        ).fetchall()


@pytest.fixture(scope="module")
def compiled(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("compile")
    assert main(_args(zoo, out, "--budget", "6")) == 0
    return out


def test_pareto_artifacts_load_and_their_manifests_match_a_re_evaluation(zoo, compiled):
    folders = sorted(p for p in (compiled / "pareto").iterdir())
    assert folders and (compiled / "report.html").stat().st_size > 10_000
    rows = (compiled / "pareto.csv").read_text().splitlines()
    assert len(rows) == len(folders) + 1
    test = zoo.data("digits-cnn", "test")
    evaluator = AccuracyEvaluator(test.inputs, test.labels)
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        onnx_file = folder / "model.onnx"
        ort.InferenceSession(str(onnx_file))  # loads
        assert manifest["final"]["accuracy"] == pytest.approx(evaluator.evaluate_onnx(onnx_file))
        assert manifest["metrics"]["size_bytes"] == onnx_file.stat().st_size  # ort-cpu loads the ONNX itself
        assert manifest["fingerprint"]["target"] == "ort-cpu" and manifest["config"]
        onnx.checker.check_model(str(onnx_file), full_check=True)
        # What the artifact runs, and under which session settings it was timed.
        lowering, settings = manifest["lowering"], manifest["runtime_settings"]
        assert settings["intra_op_num_threads"] == "2" and settings["graph_optimization_level"] == "ORT_ENABLE_ALL"
        quantized = sum(1 for p in manifest["config"].values() if p in ("int8", "int8dyn", "int4w"))
        assert sum(n for k, n in lowering["precisions"].items() if not k.endswith("fp32")) >= min(quantized, 1)
        assert lowering["inference_precision"] == "fp32"
        # Candidates are fused for the target; the FP32 reference is the model as given.
        assert lowering["fusion"]["status"] == "fused" if manifest["kind"] == "candidate" else "fusion" not in lowering
    assert len(_candidates(compiled)) == 6


def test_the_same_output_folder_needs_resume_and_the_same_settings(zoo, compiled, capsys):
    assert main(_args(zoo, compiled, "--budget", "6")) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_args(zoo, compiled, "--budget", "6", "--resume", "--seed", "5")) == 2
    assert "seed" in capsys.readouterr().err


def test_a_run_that_did_not_record_its_timing_settings_is_not_resumed(zoo, compiled, tmp_path, capsys):
    # Stores written before the timing settings were recorded were timed under other settings.
    out = tmp_path / "old"
    shutil.copytree(compiled, out)
    with sqlite3.connect(out / Store.FILENAME) as db:
        db.execute("DELETE FROM run WHERE key = 'timing'")
    assert main(_args(zoo, out, "--budget", "6", "--resume")) == 2
    assert "timing: 'not recorded' then" in capsys.readouterr().err


def test_resume_after_completion_repeats_nothing_and_extends_the_budget(zoo, compiled):
    before = _candidates(compiled)
    assert main(_args(zoo, compiled, "--budget", "8", "--resume")) == 0
    after = _candidates(compiled)
    assert after[: len(before)] == before and len(after) == 8
    with sqlite3.connect(compiled / Store.FILENAME) as db:
        predicted = [
            json.loads(p)
            for (p,) in db.execute("SELECT predicted FROM candidates WHERE kind = 'candidate' ORDER BY id")
        ]
    # LINAS's third generation came from its predictors, and they are kept beside the measurements.
    assert set(predicted[-1]) == {"accuracy", "latency", "size", "accuracy@limit"} and not predicted[0]


_COUNTING_EVALUATOR = """
import hashlib, os, onnxruntime as ort, numpy as np
from sklearn.datasets import load_digits

def score(path):
    with open(os.environ["SIMQ_TEST_LOG"], "a") as log:
        log.write(hashlib.sha256(open(path, "rb").read()).hexdigest() + "\\n")
    digits = load_digits()
    x = (digits.images[:200] / 16.0).astype(np.float32)[:, None]
    session = ort.InferenceSession(path)
    return float((session.run(None, {session.get_inputs()[0].name: x})[0].argmax(1) == digits.target[:200]).mean() * 100)

calls = 0

def flaky(path):
    global calls
    calls += 1
    if calls > 1 and calls % 2 == 0:
        raise RuntimeError("this candidate could not be scored")
    return 1.0

def broken(path):
    raise RuntimeError("no data here")
"""


@pytest.fixture
def evaluator_module(tmp_path, monkeypatch):
    (tmp_path / "user_eval.py").write_text(textwrap.dedent(_COUNTING_EVALUATOR))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_killed_run_resumes_without_losing_or_repeating_an_evaluation(zoo, tmp_path, evaluator_module):
    out, log = tmp_path / "run", tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": str(evaluator_module), "SIMQ_TEST_LOG": str(log)}
    args = _args(zoo, out, "--budget", "10", "--evaluator", "user_eval:score", "--objectives", "accuracy,size")
    process = subprocess.Popen(
        [sys.executable, "-m", "simq", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if (out / Store.FILENAME).exists() and len(_candidates(out)) >= 4:
                break
        except sqlite3.OperationalError:  # the store's file exists, its tables not yet
            pass
        time.sleep(0.05)
    process.kill()
    process.wait()
    finished = _candidates(out)
    assert 4 <= len(finished) < 10, "the run should have been killed mid-search"
    resumed = subprocess.run(
        [sys.executable, "-m", "simq", *args, "--resume"], env=env, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    final = _candidates(out)
    assert final[: len(finished)] == finished and len(final) == 10
    hashes = log.read_text().split()
    # Every model was scored once, except the reference and the Pareto set, scored again at the end,
    # and the one the kill interrupted between its scoring and its commit.
    search_calls = hashes[: len(hashes) - len(list((out / "pareto").iterdir()))]
    assert len(search_calls) - len(set(search_calls)) <= 1


def test_an_evaluator_error_on_one_candidate_is_recorded_not_fatal(zoo, tmp_path, evaluator_module):
    out = tmp_path / "flaky"
    assert main(_args(zoo, out, "--budget", "4", "--evaluator", "user_eval:flaky", "--no-prune")) == 0
    with sqlite3.connect(out / Store.FILENAME) as db:
        errors = db.execute("SELECT error FROM candidates WHERE status = 'error'").fetchall()
    assert errors and all("could not be scored" in e[0] for e in errors)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--objectives", "accuracy,speed"], "unknown objective 'speed'"),
        (["--budget", "0"], "--budget: the budget must be at least 1"),
        (["--time-limit", "0"], "--time-limit: a time limit must be positive"),
        (["--evaluator", "user_eval:broken"], "FP32 model cannot be evaluated"),
        (["--evaluator", "no_such_module:f"], "cannot import evaluator module"),
        (["--steady-state", "--algorithm", "nsga2"], "--steady-state: a steady-state search needs an algorithm told one result at a time"),
    ],
)
def test_bad_arguments_are_one_line_errors(zoo, tmp_path, evaluator_module, capsys, extra, message):
    assert main(_args(zoo, tmp_path / "out", "--budget", "2", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unwritable_output_is_a_clear_error(zoo, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(_args(zoo, blocker / "out", "--budget", "2")) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_the_same_seed_gives_the_same_pareto_set_with_predicted_latency(zoo, tmp_path):
    cost_model = tmp_path / "costmodel"
    sets = []
    for run in ("a", "b"):
        args = _args(
            zoo,
            tmp_path / run,
            "--budget",
            "8",
            "--latency",
            "predicted",
            "--cost-model",
            str(cost_model),
            "--cost-model-samples",
            "6",
        )
        assert main(args) == 0
        sets.append(
            sorted(
                json.loads((p / "manifest.json").read_text())["config"].__repr__()
                for p in (tmp_path / run / "pareto").iterdir()
            )
        )
    assert sets[0] == sets[1] and (cost_model / "costmodel.json").exists()


def test_a_time_limit_stops_the_search_with_a_valid_pareto_set_and_resume_goes_on(zoo, tmp_path, capsys):
    out = tmp_path / "limited"
    assert main(_args(zoo, out, "--budget", "6", "--time-limit", "0.0001")) == 0
    assert "stopped at its time limit" in capsys.readouterr().err
    stopped = _candidates(out)
    assert len(stopped) < 6
    manifests = [json.loads((p / "manifest.json").read_text()) for p in (out / "pareto").iterdir()]
    assert manifests and all(m["final"]["latency_ratio"] > 0 for m in manifests)
    assert main(_args(zoo, out, "--budget", "6", "--resume")) == 0
    assert _candidates(out)[: len(stopped)] == stopped and len(_candidates(out)) == 6


def test_the_time_limit_is_the_searchs_not_used_up_by_slow_baselines(zoo, tmp_path):
    """A baseline that takes longer to build than the whole limit still leaves the search its time."""
    from simq.search import CompileOptions, JobSpec, compile_model, prepare_job

    job = prepare_job(JobSpec(model=MODEL, cache_dir=zoo.cache_dir), zoo).job
    name, build = next(iter(job.baselines.items()))

    def slow(folder: Path):
        time.sleep(3.0)
        return build(folder)

    job = dataclasses.replace(job, baselines={name: slow})
    options = CompileOptions(budget=4, population=2, time_limit=2.0)
    result = compile_model(job, options, tmp_path / "out")
    assert result.evaluated >= 1


def test_the_reference_is_its_own_unit_of_latency(compiled):
    store = Store(compiled / Store.FILENAME)
    try:
        reference = next(r for r in store.records() if r.kind == "reference")
    finally:
        store.close()
    # Timed against itself it drifts (a 0.05 ms model read 1.44); it is 1 by definition.
    assert reference.metrics["latency_ratio"] == 1.0 and reference.metrics["latency_ms"] > 0
    assert reference.final["latency_ratio"] == 1.0


def test_an_objective_is_one_table_entry(zoo, tmp_path):
    """A toy objective (how many files the runtime loads) added through the table alone."""
    from simq.search import OBJECTIVES, CompileOptions, JobSpec, Objective, compile_model, prepare_job

    files = Objective("files", "files loaded", lambda record, refs, final: record.metrics.get("files"), measure=lambda artifact: len(artifact.files), hv_bound=5)
    options = CompileOptions(objectives=("accuracy", "files"), budget=3, population=2, objective_table={**OBJECTIVES, "files": files})
    job = prepare_job(JobSpec(model=MODEL, baselines=False, cache_dir=zoo.cache_dir), zoo).job
    result = compile_model(job, options, tmp_path / "out")
    assert all(r.metrics["files"] == 1 for r in [result.reference, *result.pareto])
    assert "files loaded" in (tmp_path / "out" / "report.html").read_text()


def test_the_published_front_is_bounded_and_never_slower_than_fp32(zoo, tmp_path):
    out = tmp_path / "out"
    assert main(_args(zoo, out, "--budget", "6", "--final-models", "2", "--no-baselines", "--final-time-limit", "0.01")) == 0
    manifests = [json.loads(p.read_text()) for p in (out / "pareto").glob("*/manifest.json")]
    assert 1 <= len(manifests) <= 2
    assert all(m["final"]["latency_ratio"] <= 1.0 for m in manifests)  # as the final pass timed them, which chose them
    assert all(m["final"]["rounds"] >= 10 for m in manifests if m["kind"] == "candidate")  # the minimum, however short the limit
    assert all(m["timing"]["time_limit_s"] == 0.6 and m["timing"]["min_rounds"] == 10 for m in manifests)


def test_without_a_terminal_each_phase_and_candidate_is_one_plain_line(zoo, tmp_path, capsys):
    assert main(_args(zoo, tmp_path / "out", "--budget", "3", "--no-baselines")) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert any("validating candidates (3)" in line for line in lines)
    assert sum(" #" in line and "/3)" in line and "latency" in line for line in lines) == 3
    assert any("final pass: timing in rotation: turn 1," in line for line in lines)  # not silent until every model is timed
    assert any("final pass" in line and line.endswith("done") for line in lines)
    assert "━" not in err  # no progress bars in a log


def test_a_store_written_before_the_worker_column_opens_and_resumes(tmp_path):
    path = tmp_path / Store.FILENAME
    store = Store(path)
    store.add({"a": 1}, kind="candidate", metrics={"accuracy": 1.0}, fingerprint="f", seconds=1.0)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE candidates DROP COLUMN worker")  # as stores were written before
    store = Store(path)
    try:
        assert [r.worker for r in store.records()] == [None]
        assert store.add({"a": 2}, kind="candidate", metrics={}, fingerprint="f", seconds=1.0, worker="node:7").worker == "node:7"
    finally:
        store.close()


def test_published_models_are_accepted_by_their_paired_bound_and_confirmed_on_test(zoo, compiled):
    """Every candidate keeps its per-example validation scores (through resume too), the published
    ones have their drop's upper bound within the limit, and the test split reports an interval."""
    from simq.search import References, accuracy_drop

    store = Store(compiled / Store.FILENAME)
    try:
        records = store.records()
        reference = next(r for r in records if r.kind == "reference")
        validation = len(zoo.data("digits-cnn", "validation"))
        assert all(len(r.per_example["search"]) == validation for r in records if r.status == "ok")
        references = References(reference, reference, 0.9)
        published = [r for r in records if r.artifact and r.kind == "candidate"]
        assert all(accuracy_drop(r, references).bound <= 1.0 for r in published)
        assert len(reference.per_example["final"]) == len(zoo.data("digits-cnn", "test"))
    finally:
        store.close()
    summary = json.loads((compiled / "summary.json").read_text())
    for row in summary["rows"]:
        if row["kind"] == "candidate":
            assert row["accuracy_drop_low"] <= row["accuracy_drop"] <= row["accuracy_drop_high"]
            assert row["search_accuracy_bound"] <= 1.0 and row["confirmed"] in ("yes", "beyond the limit")
            assert 0 < row["search_examples"] <= len(zoo.data("digits-cnn", "validation"))
    # no --confidence: the default for a split of this size (under 1,024 examples), stated in the report
    assert "at 90% confidence" in " ".join(summary["settings"])
    # Every row's speed-up over the bar the headline names: the bar's ratio to FP32 over the row's.
    (bar,) = [row for row in summary["rows"] if (row["baseline"] or "FP32") == summary["bar"] and row["kind"] != "candidate"]
    assert bar["speedup_over_bar"] == bar["speedup_over_bar_low"] == bar["speedup_over_bar_high"] == 1.0
    assert f"{summary['bar']} at " in summary["headline"]
    for row in summary["rows"]:
        # Both sides as summary.json rounds them: ratios to 4 decimals, speed-ups to 3.
        assert row["speedup_over_bar"] == pytest.approx(bar["latency_ratio"] / row["latency_ratio"], rel=2e-3, abs=1e-3)
        assert row["speedup_over_bar_low"] <= row["speedup_over_bar"] <= row["speedup_over_bar_high"]


def test_candidates_far_past_the_limit_stop_scoring_early_and_are_never_published(zoo, tmp_path):
    """The same search with and without early stopping: the first generation (the same
    candidates) scores the same where it is not stopped; stopped candidates are scored on part of
    the split (NaN for the rest, kept through the store); rejected ones are never published,
    accepted ones are within the limit on the whole split too."""
    import numpy as np

    from simq.eval import paired_drop

    runs = {}
    limit = 1.0  # pruned without its head refit, a digits-cnn is far past it
    for name, extra in (("early", ()), ("full", ("--no-early-rejection", "--no-early-acceptance"))):
        out = tmp_path / name
        assert main(_args(zoo, out, "--budget", "4", "--population", "4", "--no-baselines", "--no-head-refit", "--max-accuracy-drop", str(limit), *extra)) == 0
        store = Store(out / Store.FILENAME)
        try:
            runs[name] = {json.dumps(r.config, sort_keys=True): r for r in store.records("candidate")}
            runs[name + "-reference"] = store.records("reference")[0].per_example["search"]
        finally:
            store.close()
        runs[name + "-published"] = {p.name for p in (out / "pareto").iterdir()}
    validation = len(zoo.data("digits-cnn", "validation"))
    stopped = {key for key, r in runs["early"].items() if "scored_examples" in r.metrics}
    rejected = {key for key in stopped if not runs["early"][key].metrics["accepted_early"]}
    assert rejected, f"a pruned digits-cnn is far past {limit} point: some candidate should stop early"
    assert runs["early"].keys() == runs["full"].keys()
    for key, r in runs["early"].items():
        full = runs["full"][key]
        if key in stopped:
            scores = r.per_example["search"]
            assert len(scores) == validation and np.isfinite(scores).sum() == r.metrics["scored_examples"] < validation
            assert "scored_examples" not in full.metrics
            if key in rejected:
                assert str(r.id) not in runs["early-published"]
            else:
                assert paired_drop(runs["full-reference"], full.per_example["search"]).estimate <= limit
        else:
            assert r.metrics["accuracy"] == full.metrics["accuracy"]
            np.testing.assert_array_equal(r.per_example["search"], full.per_example["search"])


def test_an_unset_confidence_is_fixed_by_the_validation_split_it_judges():
    import numpy as np

    from simq.search import CompileOptions

    def split(rows: int) -> AccuracyEvaluator:
        return AccuracyEvaluator({"x": np.zeros((rows, 4), np.float32)}, np.zeros(rows, np.int64))

    assert CompileOptions().resolved(split(500)).confidence == 0.9
    assert CompileOptions().resolved(split(4500)).confidence == 0.7
    assert CompileOptions().resolved(None).confidence == 0.9
    assert CompileOptions(confidence=0.95).resolved(split(4500)).confidence == 0.95  # given: kept
    # early acceptance: on where drops are measured from the model before tuning, unless given
    assert not CompileOptions().resolved(None).early_acceptance and CompileOptions().resolved(None, from_original=True).early_acceptance
    assert CompileOptions(early_acceptance=False).resolved(None, from_original=True).early_acceptance is False


def test_a_small_validation_split_is_named_before_the_search(zoo, tmp_path, capsys):
    assert main(_args(zoo, tmp_path / "out", "--budget", "2", "--no-baselines", "--max-accuracy-drop", "0.5")) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "the validation split holds" in err and "resolves drops of about" in err


def test_the_search_can_rank_by_divergence_and_still_publish_by_accuracy(zoo, tmp_path):
    out = tmp_path / "out"
    assert main(_args(zoo, out, "--budget", "4", "--no-baselines", "--objectives", "divergence,latency", "--max-accuracy-drop", "3")) == 0
    with sqlite3.connect(out / Store.FILENAME) as db:
        metrics = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM candidates WHERE kind = 'candidate'")]
    assert all(m["divergence"] >= 0 and 0 <= m["disagreement"] <= 100 and "accuracy" in m for m in metrics)


def test_a_steady_state_search_validates_its_budget_and_resumes_without_repeating(zoo, tmp_path):
    out = tmp_path / "steady"
    assert main(_args(zoo, out, "--budget", "4", "--steady-state", "--no-baselines", "--final-models", "1")) == 0
    first = _candidates(out)
    assert len(first) == 4 and len({key for _, key, *_ in first}) == 4
    assert main(_args(zoo, out, "--budget", "6", "--steady-state", "--no-baselines", "--final-models", "1", "--resume")) == 0
    resumed = _candidates(out)
    assert resumed[:4] == first and len(resumed) == 6 and len({key for _, key, *_ in resumed}) == 6


def test_attention_outside_any_recognised_layer_is_said_before_the_search(image_model, image_folder, tmp_path):
    """SegFormer's spatially reduced attention is not a form SimQ's analysis recognises: the
    compile says that its heads and FFN width are not searched, where a ViT's layers are found
    and nothing is said."""
    transformers = pytest.importorskip("transformers")
    import torch

    from simq.data import DataOptions
    from simq.search import JobSpec, prepare_job

    folder = tmp_path / "segformer"
    config = transformers.SegformerConfig(
        image_size=16, hidden_sizes=[8, 16], depths=[1, 1], num_attention_heads=[1, 2], sr_ratios=[2, 1], num_encoder_blocks=2,
        patch_sizes=[3, 3], strides=[2, 2], decoder_hidden_size=16, num_labels=2, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.SegformerForImageClassification(config).eval().save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    prepared = {
        name: prepare_job(JobSpec(model=str(path), data=DataOptions(image_folder), baselines=False, cache_dir=tmp_path / "cache"))
        for name, path in (("segformer", folder), ("vit", image_model))
    }
    assert prepared["vit"].warnings == ()
    (warning,) = prepared["segformer"].warnings
    assert warning.startswith("2 of 2 attention blocks are not in a transformer layer") and warning in prepared["segformer"].job.notes
