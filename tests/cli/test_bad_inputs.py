"""Bad input, the way users produce it: every case is one line on stderr, exit 2, no traceback, no
hang, and nothing written to or removed from --out."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from simq.cli import main

CNN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 8, 8] x) => (float[N, 5] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w)
    r = Relu(c)
    p = GlobalAveragePool(r)
    f = Flatten(p)
    y = Gemm <transB = 1> (f, fc)
}
"""


def _cnn() -> onnx.ModelProto:
    proto = onnx.parser.parse_model(CNN)
    rng = np.random.default_rng(0)
    for name, shape in (("w", (16, 3, 3, 3)), ("fc", (5, 16))):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    return proto


def _write(folder: Path, name: str, proto: onnx.ModelProto) -> Path:
    path = folder / name
    path.write_bytes(proto.SerializeToString())
    return path


def _models(root: Path) -> dict[str, Path]:
    """Broken and odd model files, by case name."""
    m = root / "models"
    m.mkdir()
    good = _write(m, "good.onnx", _cnn())
    raw = good.read_bytes()
    out: dict[str, Path] = {}
    (m / "empty.onnx").write_bytes(b"")
    out["empty file"] = m / "empty.onnx"
    (m / "noise.onnx").write_bytes(np.random.default_rng(1).bytes(2000))
    out["random bytes"] = m / "noise.onnx"
    (m / "half.onnx").write_bytes(raw[: len(raw) // 2])
    out["truncated"] = m / "half.onnx"
    flipped = bytearray(raw)
    for i in range(10, len(flipped), 37):
        flipped[i] ^= 0xFF
    (m / "flipped.onnx").write_bytes(bytes(flipped))
    out["bit-flipped"] = m / "flipped.onnx"
    (m / "text.onnx").write_text("this is not a model\n")
    out["text named .onnx"] = m / "text.onnx"
    out["missing file"] = m / "nope.onnx"
    (m / "folder").mkdir()
    out["folder without config.json"] = m / "folder"
    (m / "badcfg").mkdir()
    (m / "badcfg" / "config.json").write_text("{not json")
    out["folder with a broken config.json"] = m / "badcfg"

    cycle = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    out["graph with a cycle"] = _write(m, "cycle.onnx", cycle)
    dangling = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    out["dangling input"] = _write(m, "dangling.onnx", dangling)
    strings = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])], "g",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [1])], [helper.make_tensor_value_info("t", TensorProto.STRING, [1])],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    out["string input and output"] = _write(m, "strings.onnx", strings)
    custom = _cnn()
    custom.graph.node[1].op_type, custom.graph.node[1].domain = "FancyRelu", "com.example"
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    out["unknown op"] = _write(m, "custom.onnx", custom)
    future = _cnn()
    future.opset_import[0].version = 99
    out["future opset"] = _write(m, "future.onnx", future)
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["r1"])], "then", [], [helper.make_tensor_value_info("r1", TensorProto.FLOAT, [1, 4])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["r2"])], "else", [], [helper.make_tensor_value_info("r2", TensorProto.FLOAT, [1, 4])])
    control = helper.make_model(helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
         helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    out["control flow"] = _write(m, "if.onnx", control)
    outside = _cnn()
    (root / "secret.bin").write_bytes(np.zeros(16 * 27, np.float32).tobytes())
    weight = outside.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(16 * 27 * 4))):
        weight.external_data.append(onnx.StringStringEntryProto(key=key, value=value))
    out["external data outside the model folder"] = _write(m, "outside.onnx", outside)
    missing_data = _cnn()
    weight = missing_data.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.append(onnx.StringStringEntryProto(key="location", value="weights.bin"))
    out["external data missing"] = _write(m, "missing-data.onnx", missing_data)
    nothing = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    out["nothing to search"] = _write(m, "relu.onnx", nothing)
    no_inputs = helper.make_model(helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=onnx.numpy_helper.from_array(np.ones((1, 4), np.float32)))], "g",
        [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    ), opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    out["no inputs"] = _write(m, "constant.onnx", no_inputs)
    return out


def _data(root: Path) -> dict[str, Path]:
    d = root / "data"
    d.mkdir()
    out: dict[str, Path] = {}

    def table(name: str, rows: list[list[object]], header=("text", "label")) -> Path:
        path = d / name
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        return path

    rows = [[f"the film was {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg"] for i in range(40)]
    out["good csv"] = table("good.csv", rows)
    (d / "empty.csv").write_text("")
    out["empty file"] = d / "empty.csv"
    out["header only"] = table("header.csv", [])
    out["one row"] = table("one.csv", rows[:1])
    latin = d / "latin.csv"
    latin.write_bytes("text,label\n".encode() + "".join(f"caf\xe9 {i},pos\n" for i in range(20)).encode("latin-1"))
    out["non-UTF-8 text"] = latin
    out["unknown labels"] = table("unknown.csv", [[r[0], "maybe"] for r in rows])
    out["NaN labels"] = table("nan.csv", [[r[0], "" if i == 3 else i % 2] for i, r in enumerate(rows)])
    (d / "data.xyz").write_text("1,2,3")
    out["unknown kind of file"] = d / "data.xyz"
    splits = d / "oddsplits"
    splits.mkdir()
    shutil.copy(out["good csv"], splits / "train.csv")
    shutil.copy(out["good csv"], splits / "holdout.csv")
    out["split without a role"] = splits
    twice = d / "twice"
    twice.mkdir()
    shutil.copy(out["good csv"], twice / "valid.csv")
    shutil.copy(out["good csv"], twice / "validation.csv")
    out["two splits claim one role"] = twice
    mixed = d / "mixed"
    mixed.mkdir()
    shutil.copy(out["good csv"], mixed / "train.csv")
    (mixed / "test.jsonl").write_text('{"text": "a", "label": "pos"}\n')
    out["mixed formats"] = mixed
    np.savez(d / "lengths.npz", x=np.zeros((10, 3, 8, 8), np.float32), labels=np.zeros(7, np.int64))
    out["npz arrays of different lengths"] = d / "lengths.npz"
    np.savez(d / "noinput.npz", other=np.zeros((10, 3, 8, 8), np.float32))
    out["npz without the model's input"] = d / "noinput.npz"
    np.savez(d / "shape.npz", x=np.zeros((10, 3, 4, 4), np.float32))
    out["npz of the wrong shape"] = d / "shape.npz"
    (d / "empty.npz").write_bytes(b"")
    out["broken npz"] = d / "empty.npz"
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good = _write(root, "good.onnx", _cnn())
    (root / "raises_on_import.py").write_text("raise RuntimeError('my module is broken')\n")
    (root / "no_function.py").write_text("x = 1\n")
    return root, good, _models(root), _data(root)


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*")}


def _cases(root: Path, good: Path, models: dict[str, Path], data: dict[str, Path], text_model: Path) -> dict[str, list[str]]:
    c = {f"compile: {name}": ["compile", str(path)] for name, path in models.items()}
    # Odd but valid models (a custom op, a future opset, control flow, no inputs) inspect fine.
    valid = ("nothing to search", "unknown op", "future opset", "control flow", "no inputs")
    c |= {f"inspect: {name}": ["inspect", str(path)] for name, path in models.items() if name not in valid}
    c |= {
        "compile: unknown zoo model": ["compile", "zoo:no-such-model"],
        "compile: not in the Hugging Face cache": ["compile", "nobody/no-such-model"],
        "measure: not an .onnx file": ["measure", str(data["good csv"])],
        "measure: missing file": ["measure", str(models["missing file"])],
        "inspect: --layer without --dot": ["inspect", str(good), "--layer", "0"],
        "show: no run here": ["show", str(root)],
        "run: not an artifact folder": ["run", str(root), "--data", str(data["good csv"])],
    }
    flags = {
        "budget 0": ["--budget", "0"], "population 1": ["--population", "1"], "unknown objective": ["--objectives", "speed"],
        "one objective": ["--objectives", "accuracy"], "negative drop": ["--max-accuracy-drop", "-1"],
        "zero latency bound": ["--max-latency-ms", "0"], "no threads": ["--threads", "0"], "unknown target": ["--target", "gpu9000"],
        "unknown algorithm": ["--algorithm", "magic"], "zero time limit": ["--time-limit", "0"],
        "malformed input shape": ["--input-shape", "x=one"], "input shape of no input": ["--input-shape", "nope=1x3x8x8"],
        "input shape of the wrong rank": ["--input-shape", "x=1x3"], "evaluator module missing": ["--evaluator", "no_such_eval:f"],
        "evaluator spec malformed": ["--evaluator", "just_a_name"], "evaluator without the function": ["--evaluator", "no_function:score"],
        "evaluator raising on import": ["--evaluator", "raises_on_import:score"], "nothing left to search": ["--no-prune", "--no-quantize"],
        "too few cost-model samples": ["--cost-model-samples", "2"], "text column without data": ["--text-column", "text"],
        "resume with nothing to resume": ["--resume"], "missing recipe": ["--config", str(root / "nope.yaml")],
        "budget as a word": ["--budget", "many"], "drop as a word": ["--max-accuracy-drop", "abc"],
        "final time limit as a word": ["--final-time-limit", "soon"], "final time limit of zero": ["--final-time-limit", "0"],
    }  # fmt: skip
    c |= {f"compile flag: {name}": ["compile", str(good), *args] for name, args in flags.items()}
    for name, text in {
        "recipe not YAML": "budget: [1,\n", "recipe with an unknown key": "budgte: 3\n", "recipe with a bad value": "budget: lots\n",
        "recipe not a mapping": "- 1\n- 2\n", "recipe with a bad choice": "algorithm: magic\n",
        "recipe with a word for minutes": "final-time-limit: soon\n", "recipe with a zero batch size": "batch-size: 0\n",
    }.items():  # fmt: skip
        path = root / f"{name.replace(' ', '-')}.yaml"
        path.write_text(text)
        c[f"compile: {name}"] = ["compile", str(good), "--config", str(path)]
    image_data = {k: v for k, v in data.items() if k.startswith(("npz", "broken npz"))}
    c |= {f"compile cnn with data: {name}": ["compile", str(good), "--data", str(path)] for name, path in image_data.items()}
    c["compile cnn with data: text for an image model"] = ["compile", str(good), "--data", str(data["good csv"])]
    c["compile onnx with text and no tokenizer"] = ["compile", str(good), "--data", str(data["good csv"]), "--input-shape", "x=1x3x8x8"]
    text = {k: v for k, v in data.items() if not k.startswith(("npz", "broken npz", "good csv"))}
    c |= {f"compile text model with data: {name}": ["compile", str(text_model), "--data", str(path)] for name, path in text.items()}
    good_csv = ["compile", str(text_model), "--data", str(data["good csv"])]
    c |= {
        "text data: missing text column": [*good_csv, "--text-column", "review"],
        "text data: missing label column": [*good_csv, "--label-column", "sentiment"],
        "text data: unknown encoding": [*good_csv, "--encoding", "klingon"],
        "text data: max length 0": [*good_csv, "--max-length", "0"],
        "text data: max length beyond the model": [*good_csv, "--max-length", "5000"],
        "text data: data path missing": ["compile", str(text_model), "--data", str(root / "nowhere.csv")],
        "text data: mean of the wrong length": ["compile", str(text_model), "--data", str(data["good csv"]), "--mean", "a,b"],
        "text data: negative std": ["compile", str(text_model), "--data", str(data["good csv"]), "--std", "-1"],
    }
    return c


def test_every_bad_input_is_one_line_and_exit_2(corpus, text_model, tmp_path, capsys, monkeypatch):
    root, good, models, data = corpus
    monkeypatch.chdir(root)  # user evaluators are looked up in the current folder
    cache = tmp_path / "cache"
    cases = _cases(root, good, models, data, text_model)
    assert len(cases) >= 60
    # A run to protect: an --out that already holds one must come out unchanged.
    protected = tmp_path / "protected"
    assert main(["compile", str(good), "--out", str(protected), "--budget", "2", "--population", "2", "--no-baselines", "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    before = _snapshot(protected)
    failures = []
    cases["compile: --out holds another run"] = ["compile", str(good)]
    cases["compile: --out is a file"] = ["compile", str(good)]
    (tmp_path / "a-file").write_text("keep me")
    for name, args in cases.items():
        out = protected if "holds another run" in name else tmp_path / "a-file" if "is a file" in name else tmp_path / f"out-{abs(hash(name))}"
        full = [*args, "--cache-dir", str(cache)] if args[0] in ("compile", "inspect") else args
        if args[0] == "compile":  # the case's own flags last, so that they win
            full = [*full[:2], "--out", str(out), "--budget", "2", "--population", "2", *full[2:]]
        try:
            status = main(full)
        except SystemExit as e:  # argparse's own usage errors
            status = e.code
        err = capsys.readouterr().err.strip()
        problems = []
        if status != 2:
            problems.append(f"exit {status}")
        if "Traceback" in err or len(err.splitlines()) != 1:
            problems.append(f"{len(err.splitlines())} lines: {err[:300]!r}")
        if "unexpected" in err:  # an error SimQ did not foresee, not a message about the input
            problems.append(f"not foreseen: {err[:300]!r}")
        if " _" in err:  # argparse names a private converter ("invalid _drop value") where one has no message
            problems.append(f"names a private function: {err[:300]!r}")
        if out == protected:
            if _snapshot(protected) != before:
                problems.append("changed the earlier run")
        elif out.name.startswith("out-") and out.exists():
            problems.append(f"wrote {sorted(p.name for p in out.iterdir())}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}")
    assert (tmp_path / "a-file").read_text() == "keep me"
    assert not failures, "\n".join(failures)
