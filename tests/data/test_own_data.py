"""The README walkthrough: your model folder and your data file, compiled, shown and run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from simq.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _compile(out: Path, model: Path | str, *extra: str, cache: Path) -> None:
    args = ["compile", str(model), "--out", str(out), "--budget", "2", "--population", "2", "--cache-dir", str(cache), *extra]
    assert main(args) == 0


def test_text_classifier_folder_and_a_csv(text_model, text_csv, tmp_path, capsys):
    out = tmp_path / "out"
    _compile(out, text_model, "--data", str(text_csv), "--text-column", "text", "--label-column", "label",
             "--max-accuracy-drop", "1", cache=tmp_path / "cache")  # fmt: skip
    captured = capsys.readouterr()
    err, printed = (" ".join(text.split()) for text in (captured.err, captured.out))
    assert "data splits: train 48, calibration 12, validation 36, test 24 (carved with a fixed seed" in err
    # Every tokenizer input was exported (token_type_ids too), once: a second load hits the cache.
    exports = list((tmp_path / "cache" / "exports").glob("*/model.onnx"))
    assert len(exports) == 1
    import simq.ir as sir

    assert [d.name for d in sir.input_domains(sir.load(exports[0]))] == ["input_ids", "token_type_ids", "attention_mask"]
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "accuracy" in shown and "FP32" in shown
    # Captured, as in a log: each configuration on one line, not wrapped to rich's 80 columns.
    configs = [r["config"] for r in json.loads((out / "summary.json").read_text())["rows"] if r["kind"] == "candidate"]
    assert configs and all(any(c in line for line in shown.splitlines()) for c in configs)
    published = [p for p in sorted((out / "pareto").iterdir()) if json.loads((p / "manifest.json").read_text())["kind"] == "candidate"]
    assert f"Pareto set ({len(published)} of 2 validated candidates)" in printed  # FP32 and baselines are not candidates
    folder = published[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"tokenizer.json", "config.json", "model.onnx", "artifact.json"} <= {p.name for p in folder.iterdir()}
    assert manifest["runtime_settings"]["intra_op_num_threads"] == "2"
    # Batch 1, and the data's 95th-percentile length ("the film was <mood> <1-5 words>" with [CLS]/[SEP]).
    assert manifest["inputs"]["input_ids"][0] == 1 and 9 <= manifest["inputs"]["input_ids"][1] <= 12
    assert main(["run", str(folder), "--data", str(text_csv), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 120 and 0 <= result["accuracy"] <= 100



def test_the_readmes_python_example_runs_as_written(text_model, text_csv, tmp_path, monkeypatch, capsys):
    snippet = re.search(r"```python\n(import simq\n.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)  # "out" and "shipped" land here
    namespace: dict = {}
    exec(snippet.replace("path/to/classifier", str(text_model)).replace("reviews.csv", str(text_csv)).replace("budget=30", "budget=2"), namespace)
    assert (tmp_path / "shipped" / "model.onnx").is_file() and (tmp_path / "shipped" / "config.json").is_file()
    assert set(namespace["model"](["the film was great"])) <= {"neg", "pos"}


def test_image_classifier_folder_and_an_image_folder(image_model, image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    _compile(out, image_model, "--data", str(image_folder), cache=tmp_path / "cache")
    assert "data splits:" in capsys.readouterr().err
    manifest = json.loads(next((out / "pareto").glob("*/manifest.json")).read_text())
    assert manifest["inputs"]["pixel_values"] == [1, 3, 16, 16]
    assert "accuracy" in manifest["final"]


def test_an_onnx_file_with_a_fixed_batch_of_one_and_an_npz(fixed_batch_model, tmp_path, capsys):
    model, data = fixed_batch_model
    out = tmp_path / "out"
    _compile(out, model, "--data", str(data), cache=tmp_path / "cache")
    manifests = [json.loads(p.read_text()) for p in (out / "pareto").glob("*/manifest.json")]
    assert manifests and all(m["inputs"]["x"] == [1, 8] for m in manifests)
    assert all("accuracy" in m["final"] for m in manifests)


def test_without_data_the_inputs_respect_the_model(text_model, tmp_path, capsys):
    """Synthetic token ids stay within the embedding table (the tiny vocabulary has 21 rows),
    segment ids within two, and the score says what it is."""
    out = tmp_path / "out"
    _compile(out, text_model, cache=tmp_path / "cache")
    assert "synthetic inputs" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == "fidelity" and "synthetic" in summary["data"]
    import simq.ir as sir
    from simq.data import SyntheticExamples

    model = sir.load(next((tmp_path / "cache" / "exports").glob("*/model.onnx")))
    examples = SyntheticExamples(sir.input_domains(model), {"input_ids": (1, 16), "token_type_ids": (1, 16), "attention_mask": (1, 16)})
    inputs = examples.role("test").inputs
    assert inputs["input_ids"].max() < 21 and set(np.unique(inputs["token_type_ids"])) <= {0, 1}
    assert set(np.unique(inputs["attention_mask"])) <= {0, 1}


def test_measure_and_sensitivity_read_the_data_too(text_model, text_csv, tmp_path, capsys):
    """A BERT export with token_type_ids: random ids beyond its two segments used to crash ONNX
    Runtime; synthetic inputs stay within the model's tables, and --data feeds real examples."""
    cache = tmp_path / "cache"
    assert main(["inspect", str(text_model), "--sensitivity", "--data", str(text_csv), "--cache-dir", str(cache), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["sensitivity"]
    assert scores and all(v >= 0 for v in scores.values())
    exported = next((cache / "exports").glob("*/model.onnx"))
    assert main(["measure", str(exported), "--repeats", "3", "--warmup", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"]["token_type_ids"] == [1, 64]  # within the 64 positions
    args = ["measure", str(exported), "--repeats", "3", "--warmup", "1", "--json", "--data", str(text_csv), "--tokenizer", str(text_model)]
    assert main(args) == 0
    assert 9 <= json.loads(capsys.readouterr().out)["inputs"]["input_ids"][1] <= 12  # the data's length
