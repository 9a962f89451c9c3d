"""`simq run OUT/pareto/ID --data ...`: score a compiled artifact in its runtime, on your data."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from simq import ir as simq_ir
from simq.cli._common import add_data_arguments, data_options
from simq.data import load_data, model_label2id
from simq.errors import ArtifactError, InvalidArgumentError
from simq.targets import Artifact, TargetRegistry

__all__ = ["register", "run"]

_BATCH = 64


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="run a compiled artifact (pareto/ID) on data: accuracy with labels, else its outputs",
        description="Load a compiled artifact in its target's runtime, with the session settings it was measured "
        "under, and run it on every example of --data: top-1 accuracy where the data has labels; "
        "--save-outputs keeps the outputs. Text is tokenized with the tokenizer that travels with the artifact.",
    )
    parser.add_argument("artifact", type=Path, help="a pareto/<id>/ folder written by simq compile")
    add_data_arguments(parser, required=True)
    parser.add_argument("--save-outputs", type=Path, metavar="FILE.npz", help="write the model's outputs to an .npz")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run, seed=0)


def run(args: argparse.Namespace) -> int:
    folder: Path = args.artifact
    if not (folder / "manifest.json").is_file() or not (folder / "artifact.json").is_file():
        raise ArtifactError(f"{folder} is not a compiled artifact folder (no manifest.json/artifact.json); give OUT/pareto/<id>.")
    options = data_options(args)
    if options is None:
        raise InvalidArgumentError("give --data: the examples to run the artifact on.")
    manifest = json.loads((folder / "manifest.json").read_text())
    artifact = Artifact.load_index(folder)
    threads = int(manifest["fingerprint"]["threads"])
    target = TargetRegistry().get(manifest["target"], threads=threads)
    domains = simq_ir.input_domains(simq_ir.load(artifact.onnx, clean=False))
    tokenizer = options.tokenizer or (folder if (folder / "tokenizer_config.json").is_file() else None)
    # Text is cut to the length the artifact was compiled and measured at, unless told otherwise.
    compiled = {shape[1] for d in domains if d.is_integer and len(shape := manifest.get("inputs", {}).get(d.name, [])) == 2}
    length = options.max_length or (compiled.pop() if len(compiled) == 1 else None)
    data = load_data(
        replace(options, tokenizer=tokenizer, max_length=length), domains, model_dir=folder, label2id=model_label2id(folder)
    ).everything()
    call = target.load(artifact)
    batch = next((d.fixed(0) for d in domains if d.fixed(0) is not None), _BATCH)
    outputs = [call({k: v[i : i + batch] for k, v in data.inputs.items()}) for i in range(0, len(data), batch)]
    merged = [np.concatenate([o[j] for o in outputs]) for j in range(len(outputs[0]))]
    result = {"artifact": str(folder), "target": target.name, "threads": threads, "examples": len(data)}
    if data.labels is not None:
        result["accuracy"] = float(100 * np.mean(merged[0].reshape(len(data), -1).argmax(-1) == data.labels))
    if args.save_outputs is not None:
        np.savez(args.save_outputs, **{f"output_{i}": o for i, o in enumerate(merged)})
        result["outputs"] = str(args.save_outputs)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        score = f"accuracy {result['accuracy']:.2f} %" if "accuracy" in result else "no labels: outputs " + ", ".join(str(list(o.shape)) for o in merged)
        Console().print(f"{folder} on {target.name} ({threads} threads): {score} over {len(data)} examples")
    return 0
