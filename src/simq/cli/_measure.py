"""`simq measure ARTIFACT --target T`: warm-up, timed repeats, median and spread."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from simq import ir as simq_ir
from simq.cli._common import add_data_arguments, data_options, parse_shapes
from simq.data import timing_feed
from simq.errors import ArtifactError, InvalidArgumentError
from simq.search import JobSpec, examples_for
from simq.targets import Artifact, TargetRegistry, time_calls

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "measure",
        help="time a model on a target (warm-up, repeats, median and spread)",
        description="Time a model on a target: warm-up calls, then timed repeats; reports the median and the "
        "interquartile spread. ARTIFACT is an .onnx file (lowered for --target first) or a published folder "
        "(OUT/pareto/<id>: timed as published, on its target with the runtime settings its manifest records, at the "
        "shape it was compiled for unless --batch-size/--seq-len say otherwise). Inputs are the first examples of "
        "--data, else seeded synthetic inputs within the model's input ranges (batch 1, 128 for other symbolic axes "
        "unless --input-shape is given).",
    )
    parser.add_argument("artifact", type=Path, help="an .onnx file, or a published folder OUT/pareto/<id>")
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"), help=argparse.SUPPRESS)
    add_data_arguments(parser, labels=False)
    parser.add_argument("--target", default="ort-cpu", help="target name (see simq targets; default ort-cpu)")
    parser.add_argument("--threads", type=int, default=2, help="threads the target may use (default 2)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls (default 50)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="examples per call (default: as compiled, else 1)")
    parser.add_argument("--seq-len", type=int, metavar="N", help="tokens per example for text inputs (default: as compiled)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS", help="the shape of one input, e.g. input_ids=1x128")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise InvalidArgumentError("--repeats and --threads must be at least 1 and --warmup at least 0.")
    published = args.artifact.is_dir() and (args.artifact / "artifact.json").is_file()
    if not published and args.artifact.suffix != ".onnx":
        raise ArtifactError(f"{args.artifact} is neither an .onnx file nor a published folder (OUT/pareto/<id>).")
    manifest = json.loads((args.artifact / "manifest.json").read_text()) if published else {}
    target = TargetRegistry().get(manifest.get("target", args.target), threads=int(manifest.get("fingerprint", {}).get("threads", args.threads)))
    compiled = Artifact.load_index(args.artifact) if published else None
    model = simq_ir.load(compiled.onnx if compiled else args.artifact, clean=False)
    data = data_options(args)
    data = replace(data, labels=False) if data is not None else None  # timing needs inputs only
    shapes = {name: tuple(shape) for name, shape in manifest.get("inputs", {}).items()} | parse_shapes(args.input_shape)
    spec = JobSpec(model=str(args.artifact), data=data, input_shapes=shapes, batch_size=args.batch_size, seq_len=args.seq_len)
    spec.check()
    examples, signature, _ = examples_for(spec, model, None, None)
    inputs = timing_feed(examples.role("test").inputs, simq_ir.input_domains(model), signature)
    with Console(stderr=True).status(f"measuring on {target.name}"), tempfile.TemporaryDirectory() as tmp:
        artifact = compiled or target.lower(model, Path(tmp))
        run_model = target.load(artifact, deployment=True)  # as a deployment runs it: the artifact's own settings
        stats = time_calls(lambda: run_model(inputs), args.warmup, args.repeats)
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
            f"{fingerprint.threads} threads), {shapes}: median {stats.median:.3f} ms, spread (IQR/median) "
            f"{stats.spread:.1%}, {stats.repeats} repeats after {args.warmup} warm-up"
        )
    return 0
