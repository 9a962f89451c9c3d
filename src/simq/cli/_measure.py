"""`simq measure ARTIFACT --target T`: warm-up, timed repeats, median and spread."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from simq import ir as simq_ir
from simq.cli._common import add_data_arguments, data_options, parse_shapes
from simq.errors import ArtifactError, InvalidArgumentError
from simq.search import JobSpec, examples_for
from simq.targets import TargetRegistry

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "measure",
        help="time a model on a target (warm-up, repeats, median and spread)",
        description="Lower an ONNX model for a target and time it: warm-up calls, then timed repeats; "
        "reports the median and the interquartile spread. Inputs are the first examples of --data, else seeded "
        "synthetic inputs within the model's input ranges (batch 1, 128 for other symbolic axes unless "
        "--input-shape is given).",
    )
    parser.add_argument("artifact", type=Path, help="an .onnx file")
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"), help=argparse.SUPPRESS)
    add_data_arguments(parser)
    parser.add_argument("--target", default="ort-cpu", help="target name (see simq targets; default ort-cpu)")
    parser.add_argument("--threads", type=int, default=2, help="threads the target may use (default 2)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise InvalidArgumentError("--repeats and --threads must be at least 1 and --warmup at least 0.")
    if args.artifact.suffix != ".onnx":
        raise ArtifactError(
            f"{args.artifact} is not an .onnx file; simq measure takes the ONNX model and lowers it itself."
        )
    target = TargetRegistry().get(args.target, threads=args.threads)
    model = simq_ir.load(args.artifact, clean=False)
    data = data_options(args)
    data = replace(data, labels=False) if data is not None else None  # timing needs inputs only
    spec = JobSpec(model=str(args.artifact), data=data, input_shapes=parse_shapes(args.input_shape))
    examples, signature, _ = examples_for(spec, model, None, None)
    test = examples.role("test").inputs
    inputs = {name: np.resize(test[name], signature[name]) for name in signature}  # the first examples, at the shapes asked
    with Console(stderr=True).status(f"measuring on {target.name}"), tempfile.TemporaryDirectory() as tmp:
        artifact = target.lower(model, Path(tmp))
        stats = target.measure(artifact, inputs, args.warmup, args.repeats)
    fingerprint = target.fingerprint()
    result = {
        "artifact": str(args.artifact),
        "target": target.name,
        "median_ms": stats.median,
        "spread": stats.spread,
        "repeats": stats.repeats,
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "fingerprint": fingerprint.__dict__,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        shapes = ", ".join(f"{k}={'x'.join(map(str, v.shape))}" for k, v in inputs.items())
        Console().print(
            f"{args.artifact} on {target.name} ({fingerprint.runtime} {fingerprint.runtime_version.split('-')[0]}, "
            f"{args.threads} threads), {shapes}: median {stats.median:.3f} ms, spread (IQR/median) "
            f"{stats.spread:.1%}, {stats.repeats} repeats after {args.warmup} warm-up"
        )
    return 0
