"""`simq.compile` and `simq.tune` from Python: data in memory, the published models, loading one
and predicting, saving it in the layout transformers loads."""

from __future__ import annotations

import pytest

import simq
from simq.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def compiled(text_model, tmp_path_factory, zoo, make_sentences):
    rows = make_sentences(120)
    out = tmp_path_factory.mktemp("api") / "out"
    run = simq.compile(
        text_model, data={"text": [t for t, _ in rows], "label": [y for _, y in rows]}, out=out, budget=2, population=2,
        baselines=False, max_accuracy_drop=None, cache_dir=zoo.cache_dir,
    )  # fmt: skip
    return run


def test_compile_takes_columns_and_returns_the_published_models(compiled):
    assert compiled.models and compiled.out.is_dir() and (compiled.out / "data").is_dir()  # the data, kept with the run
    ratios = [m.metrics["latency_ratio"] for m in compiled.models]
    assert ratios == sorted(ratios)  # fastest first
    assert compiled.best() is compiled.models[0]
    with pytest.raises(InvalidArgumentError):
        compiled.best(max_drop=-100.0)


def test_a_published_model_predicts_labels_from_text_and_saves_as_transformers_loads_it(compiled, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = compiled.best()
    predictor = model.load()
    labels = predictor(["the film was good", "the film was awful"])
    assert set(labels) <= {"neg", "pos"} and len(labels) == 2
    saved = model.save_pretrained(tmp_path / "shipped")
    assert (saved / "model.onnx").is_file()
    config = transformers.AutoConfig.from_pretrained(saved)
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved)
    assert config.id2label == {0: "neg", 1: "pos"} and tokenizer("good")["input_ids"]


def test_a_pair_of_texts_and_labels_is_data_too(text_model, tmp_path, zoo, make_sentences):
    rows = make_sentences(100, seed=3)
    run = simq.compile(
        text_model, data=([t for t, _ in rows], [y for _, y in rows]), out=tmp_path / "out", budget=1, population=2,
        baselines=False, max_accuracy_drop=None, final_models=1, cache_dir=zoo.cache_dir,
    )  # fmt: skip
    assert run.result.evaluated == 1


def test_unknown_options_and_bad_data_are_one_sentence_errors(text_model, tmp_path):
    with pytest.raises(InvalidArgumentError, match="unknown option 'budgett'"):
        simq.compile(text_model, budgett=3, out=tmp_path / "a")
    with pytest.raises(simq.SimqError, match="cannot read data of type"):
        simq.compile(text_model, data=42, out=tmp_path / "b")
