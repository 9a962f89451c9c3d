"""Load a published SimQ folder with Optimum and answer a transformers pipeline with it, in an
environment of its own (optimum-onnx pins transformers below what SimQ installs).

Creates (once) a virtual environment under .bench/optimum-venv with optimum[onnxruntime] and the
transformers it accepts, then in it: ``ORTModelForSequenceClassification.from_pretrained(FOLDER)``,
a ``pipeline("text-classification")`` over a few texts, and a check that its logits equal ONNX
Runtime's on the same tokens. Writes docs/OPTIMUM.md with the versions it ran.

Usage: python tools/check_optimum.py OUT/pareto/<id> [--venv DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["I love this, best day ever!", "this is the worst service, I hate it", "the meeting is at 3pm on Tuesday"]

_CHILD = r"""
import json, sys
import numpy as np, onnxruntime as ort
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

folder, texts = sys.argv[1], json.loads(sys.argv[2])
model = ORTModelForSequenceClassification.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
predictions = pipeline("text-classification", model=model, tokenizer=tokenizer)(texts)
tokens = tokenizer(texts, padding=True, return_tensors="np")
session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
names = [i.name for i in session.get_inputs()]
direct = session.run(None, {n: tokens[n].astype(np.int64) for n in names})[0]
through = model(**{n: tokens[n] for n in names}).logits
through = through.numpy() if hasattr(through, "numpy") else np.asarray(through)
print(json.dumps({"predictions": predictions, "max_abs_diff": float(np.abs(direct - through).max())}))
"""


def _versions(python: Path) -> dict[str, str]:
    code = (
        "import json\nfrom importlib.metadata import version, PackageNotFoundError\nout={}\n"
        "for p in ('optimum','optimum-onnx','transformers','onnxruntime','torch'):\n"
        "    try: out[p]=version(p)\n    except PackageNotFoundError: pass\nprint(json.dumps(out))"
    )
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a published folder, OUT/pareto/<id>")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench" / "optimum-venv")
    args = parser.parse_args()
    if not (args.folder / "config.json").is_file() or not (args.folder / "model.onnx").is_file():
        sys.exit(f"{args.folder} is not a published ONNX folder with a config.json (give OUT/pareto/<id> of an ort-cpu run).")
    python = args.venv / "bin" / "python"
    if not python.is_file():
        venv.create(args.venv, with_pip=True)
        # torch from the pinned CPU build beside SimQ's (constraints.txt); optimum chooses its transformers.
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), "torch", "optimum[onnxruntime]"], check=True)
    result = json.loads(subprocess.run([str(python), "-c", _CHILD, str(args.folder), json.dumps(TEXTS)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    versions = _versions(python)
    rows = "\n".join(f"| {text} | {p['label']} | {p['score']:.3f} |" for text, p in zip(TEXTS, result["predictions"]))
    doc = f"""# Shipping with Optimum

Checked by `python tools/check_optimum.py simq-out/pareto/{args.folder.name}` (the README's main job): a folder SimQ published, loaded with
Optimum's `ORTModelForSequenceClassification.from_pretrained(folder)` and answered through a
transformers `pipeline("text-classification")`, in an environment of its own:
{", ".join(f"{k} {v}" for k, v in versions.items())}.

| text | label | score |
|---|---|---|
{rows}

The logits through Optimum and through ONNX Runtime directly, on the same tokens, differ by at
most {result['max_abs_diff']:.2e}.
"""
    (ROOT / "docs" / "OPTIMUM.md").write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
