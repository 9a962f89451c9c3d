"""Tests of simq.zoo: the registry, the cache, the tiny and digits models, their data."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from simq.errors import InvalidArgumentError, MissingDependencyError, UnknownModelError
from simq.zoo import Dataset, Zoo, ZooEntry, default_cache_dir

TINY = ["bert-tiny", "vit-tiny", "resnet-tiny", "clip-tiny"]
DIGITS = ["digits-cnn", "digits-resnet", "digits-vit"]
FULL = ["bert-base", "vit-base", "resnet50", "clip-small"]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def test_every_entry_is_consistent() -> None:
    zoo = Zoo("unused")
    assert set(TINY + DIGITS + FULL + ["minilm-tweets"]) == set(zoo.names())
    for name in zoo.names():
        entry = zoo.entry(name)
        assert isinstance(entry, ZooEntry) and entry.name == name
        assert [spec.name for spec in entry.inputs] == list(entry.signature)
        for spec in entry.inputs:
            shape = entry.signature[spec.name]
            assert spec.shape[0] == "batch" and shape[0] == 1 and len(shape) == len(spec.shape)
            assert all(isinstance(d, str) or d == s for d, s in zip(spec.shape, shape))
        assert entry.has_labels == entry.real_weights
        assert "\n" not in entry.description


def test_unknown_name_suggests_a_close_match(tmp_path: Path) -> None:
    zoo = Zoo(tmp_path)
    with pytest.raises(UnknownModelError, match="did you mean 'bert-base'"):
        zoo.entry("bert-bse")
    with pytest.raises(UnknownModelError, match="known: bert-base"):
        zoo.path("no-such-model")
    assert not any(tmp_path.iterdir())


def test_default_cache_dir_is_per_user() -> None:
    assert default_cache_dir().parts[-1] == "zoo"
    assert Zoo().cache_dir == default_cache_dir()


def test_random_data_is_seeded_and_needs_no_build(tmp_path: Path) -> None:
    zoo = Zoo(tmp_path)
    calibration = zoo.data("clip-tiny", "calibration")
    assert not any(tmp_path.iterdir())
    assert len(calibration) == 32 and calibration.labels is None
    assert calibration.inputs["input_ids"].shape == (32, 32) and calibration.inputs["pixel_values"].shape == (32, 3, 32, 32)
    again = zoo.data("clip-tiny", "calibration")
    assert all(np.array_equal(calibration.inputs[k], again.inputs[k]) for k in calibration.inputs)
    test = zoo.data("clip-tiny", "test")
    assert len(test) == 64 and not np.array_equal(test.inputs["input_ids"][:32], calibration.inputs["input_ids"])
    ids, mask = calibration.inputs["input_ids"], calibration.inputs["attention_mask"]
    assert np.array_equal(ids != 0, mask == 1) and mask.sum(1).min() >= 8
    lengths = mask.sum(1)
    assert np.all(ids[np.arange(len(ids)), lengths - 1] == 999)  # CLIP pools on its end token
    assert len(zoo.data("clip-tiny", "train")) == 256
    with pytest.raises(InvalidArgumentError, match="calibration"):
        zoo.data("clip-tiny", "training")


def test_batches_cover_every_example_once() -> None:
    data = Dataset({"x": np.arange(23 * 2).reshape(23, 2)}, labels=np.arange(23))
    batches = list(data.batches(5))
    assert [len(labels) for _, labels in batches] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate([inputs["x"] for inputs, _ in batches]), data.inputs["x"])
    assert np.array_equal(np.concatenate([labels for _, labels in batches]), data.labels)
    assert [labels for _, labels in Dataset({"x": np.zeros((3, 1))}).batches(2)] == [None, None]
    with pytest.raises(InvalidArgumentError):
        data.batches(0)


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_matches_pytorch(zoo: Zoo, name: str) -> None:
    import torch

    from simq.zoo._registry import RECIPES
    from simq.zoo._transformers_models import make_model

    entry = zoo.entry(name)
    session = _session(zoo.path(name))
    # A batch and a sequence length other than the export's check that the axes stay symbolic.
    feeds = {k: v[:3] for k, v in zoo.data(name, "validation").inputs.items()}
    if "attention_mask" in feeds:
        feeds = {k: v[:, :16] if k != "pixel_values" else v for k, v in feeds.items()}
    got = session.run(list(entry.outputs), feeds)
    model = make_model(RECIPES[name])
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    for name_, value in zip(entry.outputs, got):
        assert np.abs(value - out[name_].numpy()).max() < 1e-4
    info = zoo.info(name)
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["onnx_max_abs_diff"] < 1e-4


def test_build_is_cached(zoo: Zoo) -> None:
    path = zoo.path("resnet-tiny")
    stamp = path.stat().st_mtime_ns
    start = time.perf_counter()
    assert zoo.path("resnet-tiny") == path
    assert time.perf_counter() - start < 0.1
    assert path.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == ["info.json", "model.onnx"]


def test_interrupted_build_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import simq.zoo._build as build

    real_save = build.save

    def save_then_die(model: object, path: Path) -> Path:
        real_save(model, path)
        raise KeyboardInterrupt

    zoo = Zoo(tmp_path)
    monkeypatch.setattr(build, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        zoo.path("vit-tiny")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    # What a killed process leaves behind: its build directory, and an outdated finished build.
    abandoned = tmp_path / ".vit-tiny.build-killed"
    abandoned.mkdir()
    os.utime(abandoned, (0, 0))
    (tmp_path / "vit-tiny").mkdir()
    (tmp_path / "vit-tiny" / "info.json").write_text(json.dumps({"recipe_version": 0}))
    path = zoo.path("vit-tiny")
    assert path.is_file() and zoo.info("vit-tiny")["recipe_version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vit-tiny"]


def test_missing_extra_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sklearn(name: str) -> object:
        raise ImportError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(importlib, "import_module", no_sklearn)
    with pytest.raises(MissingDependencyError, match="needs sklearn; install"):
        Zoo(tmp_path).path("digits-cnn")


def _assert_disjoint(zoo: Zoo, name: str) -> None:
    """No example (by content) is in two splits: the model never saw what it is scored on."""
    rows = {}
    for split in ("train", "calibration", "validation", "test"):
        inputs = zoo.data(name, split).inputs
        rows[split] = {b"".join(inputs[k][i].tobytes() for k in sorted(inputs)) for i in range(len(inputs[next(iter(inputs))]))}
    for a in rows:
        for b in rows:
            if a < b:
                assert not rows[a] & rows[b], f"{name}: {a} and {b} share examples"


@pytest.mark.parametrize("name", DIGITS)
def test_digits_model_is_accurate_through_onnxruntime(zoo: Zoo, name: str) -> None:
    session = _session(zoo.path(name))
    test = zoo.data(name, "test")
    hits = sum(int((session.run(["logits"], inputs)[0].argmax(-1) == labels).sum()) for inputs, labels in test.batches(64))
    accuracy = hits / len(test)
    info = zoo.info(name)
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1 / len(test))
    assert [len(zoo.data(name, split)) for split in ("train", "calibration", "validation", "test")] == [822, 256, 359, 360]
    _assert_disjoint(zoo, name)
    assert test.inputs["pixel_values"].dtype == np.float32 and test.inputs["pixel_values"].max() <= 1.0
    assert set(np.unique(test.labels)) == set(range(10))


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_model_builds_and_runs(zoo: Zoo, name: str) -> None:
    entry = zoo.entry(name)
    feeds = {k: v[:1] for k, v in zoo.data(name, "test").inputs.items()}
    outputs = _session(zoo.path(name)).run(list(entry.outputs), feeds)
    assert all(np.isfinite(o).all() for o in outputs)
    info = zoo.info(name)
    assert info["onnx_max_abs_diff"] < 1e-3
    expected = {"bert-base": 108_891_648, "vit-base": 85_798_656, "resnet50": 25_557_032}
    if name in expected:
        assert info["params"] == expected[name]


@pytest.mark.slow
def test_minilm_tweets_keeps_its_accuracy_through_onnxruntime(zoo: Zoo) -> None:
    info = zoo.info("minilm-tweets")
    # DESIGN.md's 0.707, within what the CPU's float kernels move the head's fit (0.689 built on an
    # AVX-512 EPYC, 0.69-0.70 on AVX2 ones).
    assert 0.67 <= info["test_accuracy"] <= 0.73
    assert abs(info["test_accuracy"] - info["sklearn_test_accuracy"]) <= 2 / 2808
    assert abs(info["onnx_test_accuracy"] - info["test_accuracy"]) <= 2 / 2808
    sizes = [len(zoo.data("minilm-tweets", split)) for split in ("train", "calibration", "validation", "test")]
    assert sizes == [2292, 256, 4500, 2808]
    _assert_disjoint(zoo, "minilm-tweets")
    validation = zoo.data("minilm-tweets", "validation")
    assert np.bincount(validation.labels).tolist() == [1500, 1500, 1500]  # balanced, from rows outside the draw
    texts, labels = zoo.texts("minilm-tweets", "validation")
    assert len(texts) == 4500 and (labels == validation.labels).all()
    from simq.zoo._tweets import allowed

    assert all(allowed(t) for t in texts)  # only rows DESIGN.md lets the project read
    spare, _ = zoo.texts("minilm-tweets", "spare")
    assert spare and all(allowed(t) for t in spare) and not set(spare) & set(texts)
