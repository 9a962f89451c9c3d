"""`simq tune` on a tiny BERT: first-k sub-networks the ONNX passes cut exactly, resumable, honest splits."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.data import DataOptions, load_data
from simq.errors import DataError, InvalidArgumentError
from simq.passes.prune import PruneOptions, elastic_record, prune
from simq.search import JobSpec, examples_for
from simq.tune import ElasticNetwork, TuneOptions, lr_factor, transformers_source, tune
from simq.tune._tune import _TimeBudget

torch = pytest.importorskip("torch")
FAST = TuneOptions(epochs=2, batch_size=16, lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def unique_csv(tmp_path_factory, make_sentences):
    path = tmp_path_factory.mktemp("tune-data") / "reviews.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(make_sentences(200, seed=3))
    return path


def _examples(folder, csv_path, cache):
    model = sir.load(folder, cache_dir=cache)
    return examples_for(JobSpec(model=str(folder), data=DataOptions(csv_path)), model, folder, None)[0]


def test_tuned_sub_networks_are_what_the_onnx_passes_cut(text_model, unique_csv, tmp_path):
    out = tmp_path / "tuned"
    examples = _examples(text_model, unique_csv, tmp_path / "cache")
    # A time limit the run fits in well: it plans every step and is not "stopped" by the limit.
    result = tune(transformers_source(text_model), examples, out, dataclasses.replace(FAST, validation_sample=8, time_limit=600.0))
    record = json.loads((out / "tune.json").read_text())
    assert result.epochs_done == 2 and len(record["curves"]) == 2 and result.stopped_early is None is record["stopped_early"]
    # Epoch 1 is validated on a sample, the last epoch on the whole split.
    assert [c["validation_rows"] for c in record["curves"]] == [8, len(examples.role("validation"))] and 8 < len(examples.role("validation"))
    assert {k: v for k, v in record["data"].items() if k != "train_rows"} == {"train": 80, "calibration": "disjoint", "validation": "disjoint", "test": "disjoint"}
    tuned = sir.load(out / "model.onnx")
    assert elastic_record(tuned)["order"] == "first" and (out / "original.onnx").is_file()
    structure = sir.analyze(tuned, {"input_ids": (1, 16), "token_type_ids": (1, 16), "attention_mask": (1, 16)})
    source = transformers_source(out / "model")  # the tuned model as saved
    source.module.eval()
    elastic = ElasticNetwork(source.module, tuned, structure)
    feed = {k: v[:4] for k, v in load_data(DataOptions(unique_csv, max_length=16, labels=False), sir.input_domains(tuned), model_dir=out / "model").role("test").inputs.items()}
    # Tuning ran its sub-networks sliced (BERT's attention infers its heads from Q/K/V's width).
    assert record["sub_networks"] == result.sub_networks == "sliced" and elastic.use_slices({k: torch.from_numpy(v) for k, v in feed.items()}, source.logits)
    layer, block = structure.layers[1], next(b for b in structure.removable_blocks if b.layer == 0)
    config = {f"heads.{layer.index}": 1, f"ffn.{layer.index}": layer.ffn.width // 4, f"depth.{block.index}": True}
    elastic.set(config)
    with torch.no_grad():
        want = source.logits({k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
    pruned = prune(tuned.clone(), structure, config, None, PruneOptions(order="first", reconstruct=False))
    session = ort.InferenceSession(ir.to_proto(pruned).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, feed)[0]
    assert np.abs(got - want).max() <= 1e-4
    elastic.set({})
    with torch.no_grad():
        full = source.logits({k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
    assert np.abs(full - want).max() > 1e-3  # the sub-network is another network


def test_a_killed_run_resumes_from_its_last_checkpoint(text_model, unique_csv, tmp_path):
    examples = _examples(text_model, unique_csv, tmp_path / "cache")
    out = tmp_path / "tuned"

    def kill_in_epoch_two(phase, done, total, values):
        if phase == "training" and values["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(transformers_source(text_model), examples, out, FAST, progress=kill_in_epoch_two)
    assert (out / "checkpoint.pt").is_file() and not (out / "tune.json").exists()
    with pytest.raises(Exception, match="--resume"):
        tune(transformers_source(text_model), examples, out, FAST)
    flipped = dataclasses.replace(FAST, train_embeddings=not FAST.train_embeddings)
    with pytest.raises(InvalidArgumentError, match="--train-embeddings"):  # another set of trained parameters
        tune(transformers_source(text_model), examples, out, flipped, resume=True)
    epochs_seen = set()
    resumed = tune(
        transformers_source(text_model), examples, out, FAST, resume=True,
        progress=lambda phase, done, total, values: epochs_seen.add(values.get("epoch")) if phase == "training" else None,
    )  # fmt: skip
    assert epochs_seen == {2} and resumed.epochs_done == 2
    uninterrupted = tune(transformers_source(text_model), examples, tmp_path / "again", FAST)
    assert [round(c["loss"], 5) for c in resumed.curves] == [round(c["loss"], 5) for c in uninterrupted.curves]


def test_the_learning_rate_warms_up_then_decays_to_zero_by_the_last_step():
    steps = [lr_factor(step, 100, 0.1) for step in range(101)]
    assert steps[0] == pytest.approx(0.1) and steps[9] == pytest.approx(1.0) and steps[100] == 0.0
    assert all(a >= b for a, b in zip(steps[10:], steps[11:]))  # decays after the warm-up


def test_a_time_limited_run_stops_within_its_limit_and_resuming_it_needs_more_time(text_model, unique_csv, tmp_path):
    examples = _examples(text_model, unique_csv, tmp_path / "cache")
    stamps = []

    def slow(phase, done, total, values):  # every step takes 0.1 s more: the limit falls early in 40 epochs
        if phase == "training":
            stamps.append(time.monotonic())
            time.sleep(0.1)

    options = dataclasses.replace(FAST, epochs=40, time_limit=12.0)
    result = tune(transformers_source(text_model), examples, tmp_path / "tuned", options, progress=slow)
    assert result.stopped_early == "time limit" and 3 <= len(stamps) < 200  # 3: the fewest a plan needs (a loaded machine)
    # It stopped after the steps its plan fitted, its last validation within the limit, at the
    # rate the 40-epoch schedule had reached.
    assert result.curves[-1]["lr"] == pytest.approx(options.lr * lr_factor(len(stamps), 200, options.warmup))
    step = max(b - a for a, b in zip(stamps, stamps[1:]))
    assert 0.5 * options.time_limit <= json.loads((tmp_path / "tuned" / "tune.json").read_text())["seconds"] <= options.time_limit + step
    with pytest.raises(InvalidArgumentError, match="larger --time-limit"):  # resuming it needs more time
        tune(transformers_source(text_model), examples, tmp_path / "tuned", options, resume=True)


def test_a_time_limit_plans_the_steps_that_fit_beside_a_validation_after_every_epoch():
    budget = _TimeBudget(limit=1000.0, steps_per_epoch=300, epochs=3)
    assert budget.planned(0) == math.inf  # nothing timed yet
    budget.validation = 100.0
    for _ in range(3):
        budget.stepped(1.0)
    # 3 steps taken; two epochs and their validations take 800 s; epoch 3 fits 100 steps, then its validation.
    assert budget.planned(3) == pytest.approx(3 + 700 - 1, abs=1)  # one step kept in hand
    budget.validation = 300.0  # epoch 1, then 103 steps of epoch 2 and the validation that ends the run
    assert budget.planned(3) == pytest.approx(3 + 400 - 1, abs=1)
    assert not budget.spent(3) and _TimeBudget(1e-9, 300, 3).spent(0)  # a limit already passed
    # Validations before the last on a quarter of the split: epochs 1 and 2 whole (their validations
    # 75 + 300 s), where a whole-split validation after epoch 1 left room for 103 steps of epoch 2.
    budget.share = 0.25
    assert budget.planned(3) == 600
    assert not _TimeBudget(None, 300, 3).spent(10**6)  # no limit


def test_training_rows_must_not_be_scored_rows(text_model, tmp_path, make_sentences):
    path = tmp_path / "dupes.csv"
    rows = make_sentences(60, seed=4)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows + rows[:30])  # the same reviews twice: some land in two splits
    with pytest.raises(DataError, match="also in the"):
        tune(transformers_source(text_model), _examples(text_model, path, tmp_path / "cache"), tmp_path / "out", FAST)


def test_a_model_tuned_from_the_zoo_is_scored_on_that_zoo_models_splits(zoo, tmp_path):
    folder = tmp_path / "tuned"
    folder.mkdir()
    (folder / "tune.json").write_text(json.dumps({"source": "zoo:digits-cnn"}))  # what simq tune records
    model = sir.load(zoo.path("digits-cnn"))
    examples = examples_for(JobSpec(model=str(folder)), model, folder, zoo)[0]
    assert examples.labelled and "digits-cnn" in examples.describe()
    assert np.array_equal(examples.role("test").labels, zoo.data("digits-cnn", "test").labels)
    (folder / "tune.json").write_text(json.dumps({"source": "/data/my-bert"}))
    assert examples_for(JobSpec(model=str(folder)), model, folder, zoo)[0].synthetic


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory, text_model):
    """The tiny BERT with four layers: two middle layers tuning may drop."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("deep-model")
    config = transformers.AutoConfig.from_pretrained(text_model)
    config.num_hidden_layers = 4
    torch.manual_seed(1)
    transformers.BertForSequenceClassification(config).eval().save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(text_model).save_pretrained(folder)
    return folder


def test_depth_is_trained_least_important_first_and_compile_searches_only_what_was_trained(deep_model, unique_csv, tmp_path):
    from simq.search import prepare_job

    out = tmp_path / "tuned"
    tune(transformers_source(deep_model), _examples(deep_model, unique_csv, tmp_path / "cache"), out, TuneOptions(epochs=1, batch_size=16, seed=0, min_depth=0.5, distil_hidden=0.0))  # logits only (the default distils hidden states too)
    record = json.loads((out / "tune.json").read_text())
    assert record["options"]["distil_hidden"] == 0.0 and all(np.isfinite(c["loss"]) for c in record["curves"])
    order = record["orders"]["depth"]
    assert len(order) == 2  # the middle layers, the first and the last are never dropped
    record = elastic_record(sir.load(out / "model.onnx"))
    assert record["depth_order"] == order and record["max_drops"] == 2
    job = prepare_job(JobSpec(model=str(out), data=DataOptions(unique_csv), baselines=False, cache_dir=tmp_path / "cache")).job
    pipeline = job.pipeline
    assert job.accuracy_reference is not None  # drops from the model before tuning: early acceptance is on by default
    depth = sorted(k.name for k in pipeline.knobs if k.name.startswith("depth."))
    assert depth == sorted(order)
    heads = next(k for k in pipeline.knobs if k.name.startswith("heads."))
    assert min(heads.domain) >= 0.25 * heads.default  # nothing narrower than tuning trained
    repaired = pipeline.repair({order[1]: True})
    assert repaired[order[0]] and not repaired[order[1]]  # one block dropped: the least important


def test_hidden_state_distillation_sees_each_kept_layer_and_leaves_padding_out(deep_model, unique_csv, tmp_path):
    from simq.tune._tune import hidden_loss

    source = transformers_source(deep_model)
    feed = {k: np.asarray(v[:4]) for k, v in _examples(deep_model, unique_csv, tmp_path / "cache").role("calibration").inputs.items()}
    model = sir.cleanup(source.export(feed))
    structure = sir.analyze(model, sir.resolve_signature(model, {k: (1, *v.shape[1:]) for k, v in feed.items()}))
    source.module.eval()
    elastic = ElasticNetwork(source.module, model, structure)
    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
    assert elastic.use_slices(tensors, source.logits)  # the dropped layer is not even run
    dropped = next(b for b in structure.removable_blocks if b.layer == 1)
    elastic.set({f"depth.{dropped.index}": True})
    elastic.record_hidden(True)
    with torch.no_grad():
        states = source.module(**tensors, output_hidden_states=True).hidden_states
    assert sorted(elastic.hidden) == [0, 2, 3]  # the dropped layer is not compared
    for index, out in elastic.hidden.items():
        assert torch.allclose(out, states[index + 1])
    assert torch.equal(states[2], states[1])  # the dropped layer passed its input through
    mask = tensors["attention_mask"]
    student = {i: h.clone() for i, h in elastic.hidden.items()}
    assert float(hidden_loss(student, elastic.hidden, mask, torch)) == 0.0
    assert not bool(mask.all())  # the batch has padding
    student[3][mask == 0] += 5.0  # padding moves nothing
    assert float(hidden_loss(student, elastic.hidden, mask, torch)) == 0.0
    student[3][mask == 1] += 0.1
    assert float(hidden_loss(student, elastic.hidden, mask, torch)) > 0.0
    elastic.close()


@pytest.mark.parametrize("sliced", [True, False], ids=["sliced", "masked"])
def test_modernbert_is_elastic_in_each_third_of_its_fused_projection_and_both_halves_of_its_gated_ffn(modernbert, sliced):
    """Sorting ModernBERT's heads and neurons by importance keeps its function; then a first-k
    sub-network in PyTorch (sliced or masked) is what the ONNX passes cut from the re-exported model."""
    folder, feed = modernbert
    source = transformers_source(folder)
    source.module.eval()
    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
    signature = {k: (1, *v.shape[1:]) for k, v in feed.items()}
    model = sir.cleanup(source.export(feed))
    elastic = ElasticNetwork(source.module, model, sir.analyze(model, signature))
    with torch.no_grad():
        before = source.logits(tensors).numpy()
        orders = elastic.reorder([tensors], lambda batch: source.module(**batch))
        assert np.abs(source.logits(tensors).numpy() - before).max() <= 1e-4
    assert orders[0]["heads"] != [0, 1, 2, 3] or orders[0]["ffn"] != list(range(48))  # something moved
    elastic.close()
    model = sir.cleanup(source.export(feed))  # the reordered weights
    structure = sir.analyze(model, signature)
    elastic = ElasticNetwork(source.module, model, structure)
    if sliced:
        assert elastic.use_slices(tensors, source.logits)
    block = next(b for b in structure.removable_blocks if b.layer == 1)
    config = {"heads.0": 2, "ffn.0": 18, "heads.2": 1, "ffn.2": 30, f"depth.{block.index}": True}
    elastic.set(config)
    with torch.no_grad():
        want = source.logits(tensors).numpy()
    pruned = prune(model.clone(), structure, config, None, PruneOptions(order="first", reconstruct=False))
    got = ort.InferenceSession(ir.to_proto(pruned).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(got - want).max() <= 1e-4 and np.abs(before - want).max() > 1e-2
    assert elastic.sliced is sliced


def test_sub_networks_of_layers_that_share_weights_run_masked(tmp_path):
    """ALBERT runs one layer's weights at every depth: a width per layer cannot be a slice of one
    module, so its sub-networks keep the masks (and still compute the pruned network)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.AlbertConfig(
        vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48, num_labels=2,
    )  # fmt: skip
    folder = tmp_path / "albert"
    transformers.AlbertForSequenceClassification(config).eval().save_pretrained(folder)
    source = transformers_source(folder)
    source.module.eval()
    feed = {"input_ids": np.random.default_rng(0).integers(5, 50, (2, 12)), "attention_mask": np.ones((2, 12), dtype=np.int64)}
    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
    model = sir.cleanup(source.export(feed))
    elastic = ElasticNetwork(source.module, model, sir.analyze(model, {k: (1, 12) for k in feed}))
    assert not elastic.use_slices(tensors, source.logits) and not elastic.sliced
    with torch.no_grad():
        full = source.logits(tensors)
        elastic.set({"heads.1": 1, "ffn.1": 12})
        assert not torch.allclose(source.logits(tensors), full)  # the masks still prune
    elastic.close()


def test_a_tuned_model_is_never_calibrated_or_scored_on_rows_it_was_tuned_on(text_model, unique_csv, tmp_path):
    from simq.search import prepare_job

    out = tmp_path / "tuned"
    tune(transformers_source(text_model), _examples(text_model, unique_csv, tmp_path / "cache"), out, TuneOptions(epochs=1, batch_size=16, seed=0))
    assert len(json.loads((out / "tune.json").read_text())["data"]["train_rows"]) == 80
    shuffled = tmp_path / "same-rows.csv"  # another file holding the same reviews, in another order
    rows = list(csv.reader(unique_csv.open()))
    with shuffled.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], *rows[:0:-1]])
    for data in (DataOptions(unique_csv, seed=1), DataOptions(shuffled)):
        with pytest.raises(DataError, match=r"\d+ examples of the \w+ split are rows this model was tuned on"):
            prepare_job(JobSpec(model=str(out), data=data, baselines=False, cache_dir=tmp_path / "cache"))
