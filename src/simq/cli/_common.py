"""Options shared by the commands that take a model."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
from rich.console import Console

from simq import ir as simq_ir
from simq.errors import InvalidArgumentError

__all__ = ["DEFAULT_MODEL", "LoadedModel", "add_model_arguments", "load_model"]

#: The built-in default model: real weights and real data, small enough for minutes-long runs.
DEFAULT_MODEL = "zoo:minilm-tweets"

_SHAPE = re.compile(r"^([^=]+)=(\d+(?:x\d+)*)$")


@dataclass(frozen=True)
class LoadedModel:
    source: str
    model: ir.Model
    signature: dict[str, tuple[int, ...]] | None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"an .onnx file, a transformers model directory, or zoo:NAME (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="concrete shape of an input for costs, e.g. input_ids=1x128 (repeatable; "
        "default: the zoo model's, else batch 1 and 128 for other symbolic axes)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=os.environ.get("SIMQ_CACHE_DIR"),
        help="where zoo models are built and kept (default: $SIMQ_CACHE_DIR or the user cache directory)",
    )


def _parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        match = _SHAPE.match(item)
        if match is None:
            raise InvalidArgumentError(f"--input-shape {item!r} is not NAME=DIMS such as input_ids=1x128.")
        shapes[match[1]] = tuple(int(d) for d in match[2].split("x"))
    return shapes


def load_model(args: argparse.Namespace, console: Console) -> LoadedModel:
    """Load ``args.model`` (building a zoo model on first use) with its input signature."""
    source: str | Path = args.model
    signature: dict[str, tuple[int, ...]] = {}
    if args.model.startswith("zoo:"):
        from simq.zoo import Zoo  # the zoo pulls in example dependencies; only zoo sources need it

        zoo = Zoo(args.cache_dir)
        name = args.model[len("zoo:") :]
        signature = dict(zoo.entry(name).signature)
        source = zoo.path(name)  # builds the model on first use, with its own progress display
    signature.update(_parse_shapes(args.input_shape))
    with console.status(f"loading {args.model}"):
        model = simq_ir.load(source)
    return LoadedModel(args.model, model, signature or None)
