"""Reading data in every form the README lists, and giving its rows their roles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simq.data import ROLES, DataOptions, assign_roles, load_data, read_data
from simq.errors import DataError
from simq.ir import InputDomain

TEXT_INPUTS = [InputDomain("input_ids", np.dtype(np.int64), ("batch", "seq"), 21), InputDomain("attention_mask", np.dtype(np.int64), ("batch", "seq"), None, True)]


def _rows(n: int) -> list[dict]:
    return [{"text": f"the film was {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"} for i in range(n)]


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "saved", "folder"])
def test_every_table_form_reads_the_same_rows(kind, tmp_path):
    rows = _rows(30)
    if kind == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind in ("parquet", "saved"):
        import datasets

        table = datasets.Dataset.from_list(rows)
        if kind == "parquet":
            path = tmp_path / "data.parquet"
            table.to_parquet(str(path))
        else:
            path = tmp_path / "saved"
            datasets.DatasetDict({"train": table, "test": table.select(range(10))}).save_to_disk(str(path))
    else:
        path = tmp_path / "splits"
        path.mkdir()
        for split, part in (("train", rows[:20]), ("dev", rows[20:25]), ("test", rows[25:])):
            (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    raw = read_data(path)
    assert {"text", "label"} <= set(raw.columns())
    expected = 40 if kind == "saved" else 30
    assert len(raw) == expected


def test_named_splits_keep_their_roles_and_missing_ones_are_carved_disjoint():
    plan = assign_roles({"train": 100, "dev": 30, "test": 20}, seed=0)
    assert plan.parts["validation"][0] == "dev" and plan.parts["test"][0] == "test" and plan.carved == ("calibration",)
    calibration, train = plan.parts["calibration"][1], plan.parts["train"][1]
    assert plan.parts["calibration"][0] == plan.parts["train"][0] == "train"
    assert len(calibration) == 10 and not set(calibration) & set(train) and len(calibration) + len(train) == 100
    whole = assign_roles({"data": 500}, seed=0)
    indices = [set(whole.parts[role][1].tolist()) for role in ROLES]
    assert sum(map(len, indices)) == 500 and len(set().union(*indices)) == 500
    assert [len(whole.parts[r][1]) for r in ROLES] == [200, 50, 150, 100]  # train, calibration, validation, test
    assert assign_roles({"data": 500}, seed=0).parts["test"][1].tolist() == whole.parts["test"][1].tolist()
    assert assign_roles({"data": 500}, seed=1).parts["test"][1].tolist() != whole.parts["test"][1].tolist()


def test_text_pairs_go_through_the_tokenizer_together(text_model, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"premise": r["text"], "hypothesis": "a film", "label": r["label"]}) + "\n" for r in _rows(40)))
    inputs = [*TEXT_INPUTS, InputDomain("token_type_ids", np.dtype(np.int64), ("batch", "seq"), 2)]
    options = DataOptions(path, text_column="premise", text_pair_column="hypothesis")
    data = load_data(options, inputs, model_dir=text_model, label2id={"neg": 0, "pos": 1})
    test = data.role("test")
    assert set(np.unique(test.inputs["token_type_ids"])) == {0, 1}  # the second sentence is segment 1
    assert test.labels.dtype == np.int64 and set(test.labels) <= {0, 1}


def test_data_without_labels_says_what_scores_it_instead(text_model, tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"review": r["text"], "sentiment": r["label"]}) + "\n" for r in _rows(40)))
    data = load_data(DataOptions(path), TEXT_INPUTS, model_dir=text_model)
    assert not data.labelled and "no labels (no label column; --label-column names one)" in data.describe()
    labelled = load_data(DataOptions(path, label_column="sentiment"), TEXT_INPUTS, model_dir=text_model, label2id={"neg": 0, "pos": 1})
    assert labelled.labelled and "no labels" not in labelled.describe()


def test_an_npz_feeds_its_arrays_and_labels(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, x=np.arange(40 * 4, dtype=np.float64).reshape(40, 4), labels=np.arange(40) % 3)
    data = load_data(DataOptions(path), [InputDomain("x", np.dtype(np.float32), (1, 4))])
    everything = data.everything()
    assert everything.inputs["x"].dtype == np.float32 and len(everything) == 40
    assert data.labelled and sorted(np.concatenate([data.role(r).labels for r in ROLES]).tolist()) == sorted((np.arange(40) % 3).tolist())
    with pytest.raises(DataError, match="not an array of the .npz"):
        load_data(DataOptions(path, label_column="classes"), [InputDomain("x", np.dtype(np.float32), (1, 4))])


def test_a_convolutional_net_takes_the_images_its_processor_makes(image_folder, tmp_path):
    """An HF ResNet's config has no image_size: the export takes its image processor's size."""
    transformers = pytest.importorskip("transformers")
    import simq.ir as sir

    folder = tmp_path / "resnet"
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})
    transformers.ResNetForImageClassification(config).eval().save_pretrained(folder)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)
    domains = sir.input_domains(sir.load(folder, cache_dir=tmp_path / "cache"))
    assert [d.shape[2:] for d in domains] == [(32, 32)]
    data = load_data(DataOptions(image_folder), domains, model_dir=folder)
    assert data.role("test").inputs["pixel_values"].shape[1:] == (3, 32, 32)


def test_images_a_processor_makes_at_another_size_than_the_model_takes_are_refused(image_model, image_folder, tmp_path):
    transformers = pytest.importorskip("transformers")
    import shutil

    import simq.ir as sir

    folder = tmp_path / "vit"
    shutil.copytree(image_model, folder)
    domains = sir.input_domains(sir.load(folder, cache_dir=tmp_path / "cache"))  # 16x16 (its config)
    transformers.ViTImageProcessor(size={"height": 24, "width": 24}).save_pretrained(folder)
    with pytest.raises(DataError, match="makes 24x24 images, but the model takes 16x16; give --image-size 16"):
        load_data(DataOptions(image_folder), domains, model_dir=folder).role("test").inputs


def test_string_labels_for_a_model_with_placeholder_class_names_say_why_they_are_refused(tmp_path):
    from simq.data._encode import encode_labels, model_label2id

    (tmp_path / "config.json").write_text(json.dumps({"label2id": {"LABEL_0": 0, "LABEL_1": 1}}))
    assert model_label2id(tmp_path) is None  # placeholders name no class
    with pytest.raises(DataError, match="only the placeholders LABEL_0.*give class indices"):
        encode_labels(["pos", "neg"], model_label2id(tmp_path))
