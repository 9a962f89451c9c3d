"""Print `simq inspect` for every zoo model and write docs/ZOO.md.

For the models with labels it also measures test accuracy through ONNX Runtime, beside the
accuracy of the PyTorch pipeline the model was built from (recorded in its info.json).

Usage: python tools/zoo_summary.py [--cache-dir DIR] [--out docs/ZOO.md] [NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime as ort

import simq.ir as sir
from simq.zoo import Zoo, default_cache_dir

ROOT = Path(__file__).resolve().parent.parent


def ort_accuracy(zoo: Zoo, name: str) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(zoo.path(name)), options, providers=["CPUExecutionProvider"])
    test = zoo.data(name, "test")
    correct = 0
    for inputs, labels in test.batches(64):
        logits = session.run(None, inputs)[0]
        correct += int((logits.argmax(-1) == labels).sum())
    return correct / len(test)


def inspect(name: str, cache_dir: Path) -> str:
    env = {**os.environ, "COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(
        [sys.executable, "-m", "simq", "inspect", f"zoo:{name}", "--cache-dir", str(cache_dir)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ZOO.md")
    args = parser.parse_args()
    cache_dir = args.cache_dir or default_cache_dir()
    zoo = Zoo(cache_dir)
    names = args.names or zoo.names()

    rows, sections = [], []
    for name in names:
        start = time.perf_counter()
        zoo.path(name)
        built = time.perf_counter() - start
        entry, info = zoo.entry(name), zoo.info(name)
        summary = inspect(name, cache_dir)
        print(summary)
        accuracy = ""
        if entry.has_labels:
            ours = ort_accuracy(zoo, name)
            theirs = info.get("test_accuracy")
            accuracy = f"{ours:.4f} (PyTorch {theirs:.4f})" if theirs is not None else f"{ours:.4f}"
        inputs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in entry.signature.items())
        graph_params = sir.analyze(sir.load(zoo.path(name)), entry.signature).params
        rows.append(f"| `{name}` | {entry.description} | {inputs} | {info['params']:,} | {graph_params:,} | {accuracy} |")
        sections.append(f"## `zoo:{name}`\n\n{entry.description}\n\n```\n{summary.rstrip()}\n```\n")
        print(f"{name}: ready in {built:.1f} s", file=sys.stderr)

    text = "\n".join(
        [
            "# The zoo",
            "",
            "Written by `python tools/zoo_summary.py` (each section is `simq inspect zoo:NAME`).",
            "Accuracy is on the model's test split, through ONNX Runtime, beside the PyTorch pipeline",
            "it was exported from. PyTorch parameters are the module's own count; graph parameters are",
            "what `simq inspect` counts in the ONNX graph (floating-point initializers). They agree except",
            "where the exporter folds each BatchNorm (2C parameters) into its Conv's bias (C): the ResNets",
            "and CNNs; and CLIP, whose scalar logit scale feeds neither embedding output.",
            "",
            "| model | what it is | default inputs | PyTorch parameters | graph parameters | test accuracy |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            *sections,
        ]
    )
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
