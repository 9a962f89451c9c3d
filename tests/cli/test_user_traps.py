"""What a new user runs into: texts past the model's positions, empty texts, labels the model does
not have, test rows repeated from train, a fraction for a drop in points, --ray before the
model, a model quantized already. Each is handled as a user expects: cut with a note, kept with a note, or refused in one
sentence."""

from __future__ import annotations

import csv

from simq.cli import main


def _csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _compile(text_model, data, out, *extra):
    return main(["compile", str(text_model), "--data", str(data), "--out", str(out), "--budget", "1", "--population", "2",
                 "--no-baselines", "--final-models", "1", *extra])  # fmt: skip


def test_long_texts_are_cut_to_the_models_positions_and_empty_ones_kept_with_a_note(text_model, tmp_path, capsys, make_sentences):
    rows = make_sentences(80, seed=7)
    rows[3] = (" ".join(["good film"] * 200), "pos")  # 400 words, the model takes 64 positions
    rows[5] = ("", "neg")
    assert _compile(text_model, _csv(tmp_path / "d.csv", rows), tmp_path / "out") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "1 examples have an empty text; kept" in err


def test_labels_the_model_does_not_have_are_refused(text_model, tmp_path, capsys, make_sentences):
    rows = [(t, 7 if i == 0 else i % 2) for i, (t, _) in enumerate(make_sentences(60, seed=8))]
    assert _compile(text_model, _csv(tmp_path / "d.csv", rows), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "label 7, but the model has 2 classes" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_test_rows_repeated_from_train_are_refused(text_model, tmp_path, capsys, make_sentences):
    folder = tmp_path / "splits"
    folder.mkdir()
    rows = make_sentences(90, seed=9)
    _csv(folder / "train.csv", rows[:60])
    _csv(folder / "validation.csv", rows[60:75])
    _csv(folder / "test.csv", rows[75:] + rows[:5])  # five training reviews offered again for testing
    assert _compile(text_model, folder, tmp_path / "out") == 2
    assert "5 examples of the test split are also in the train split" in " ".join(capsys.readouterr().err.split())


def test_a_drop_written_as_a_fraction_gets_a_note_on_its_unit(text_model, text_csv, tmp_path, capsys):
    assert _compile(text_model, text_csv, tmp_path / "out", "--max-accuracy-drop", "0.01") == 0
    assert "is in points of the score" in " ".join(capsys.readouterr().err.split())


def test_ray_before_the_model_is_named_not_compiled_as_the_default_model(tmp_path, capsys):
    assert main(["compile", "--ray", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is not a cluster address" in err and "put the model first" in err


def test_every_command_and_flag_says_what_it_does():
    import argparse

    from simq.cli._main import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert parser.description, f"simq {name} has no description"
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"simq {name} {action.option_strings[0]} has no help"


def test_a_dataset_id_not_in_the_local_cache_says_where_it_looked(text_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    assert _compile(text_model, "stanfordnlp/imdb", tmp_path / "out") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "local datasets cache" in err and "nothing is downloaded" in err and "Traceback" not in err


def test_a_model_quantized_already_is_refused_naming_its_quantized_ops(fixed_batch_model, tmp_path, capsys):
    from onnxruntime.quantization import quantize_dynamic

    model, data = fixed_batch_model
    quantize_dynamic(model, tmp_path / "int8.onnx")
    args = ["compile", str(tmp_path / "int8.onnx"), "--data", str(data), "--out", str(tmp_path / "out"), "--budget", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is quantized already (" in err and "MatMulInteger" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
