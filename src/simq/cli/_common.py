"""Options shared by the commands that take a model."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
from rich.console import Console
from rich.table import Table

from simq import ir as simq_ir
from simq.data import DataOptions, Examples
from simq.errors import InvalidArgumentError
from simq.search import SPEEDUP_HEADER, JobSpec, display_table, examples_for

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "add_data_arguments",
    "add_model_arguments",
    "cache_root",
    "data_options",
    "load_model",
    "parse_shapes",
    "table_console",
    "zoo_for",
]

#: The built-in default model: real weights and real data, small enough for minutes-long runs.
DEFAULT_MODEL = "zoo:minilm-tweets"

_SHAPE = re.compile(r"^([^=]+)=(\d+(?:x\d+)*)$")


@dataclass(frozen=True)
class LoadedModel:
    source: str
    model: ir.Model
    signature: dict[str, tuple[int, ...]] | None
    path: Path | None  # the ONNX file, when there is one
    folder: Path | None = None  # the transformers folder it came from

    def examples(self, args: argparse.Namespace) -> tuple[Examples, dict[str, tuple[int, ...]], int | None]:
        """The model's examples (``--data``, a zoo model's splits, else synthetic inputs within the
        model's input ranges), the signature they imply, and the batch the model fixes."""
        spec = JobSpec(
            model=self.source, data=data_options(args) if hasattr(args, "data") else None,
            input_shapes=parse_shapes(args.input_shape), cache_dir=args.cache_dir,
        )  # fmt: skip
        return examples_for(spec, self.model, self.folder, zoo_for(args))

    def calibration_batches(self, args: argparse.Namespace, count: int, batch_size: int = 16) -> list[dict[str, np.ndarray]]:
        """Calibration feeds from `examples`."""
        examples, _, batch = self.examples(args)
        return [x for x, _ in examples.role("calibration").batches(batch or batch_size)][:count]


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


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = False, labels: bool = True) -> None:
    """``--data`` and how to read it (see `simq.data.DataOptions`); `labels`: offer
    ``--label-column`` (not where only inputs matter, e.g. timing)."""
    group = parser.add_argument_group(
        "data",
        "your data: a CSV/TSV, JSON Lines or Parquet file, a folder of such files named after their splits "
        "(train, calibration, validation or dev, test), a folder saved by the datasets library, an image folder "
        "(one subfolder per class), or an .npz of arrays named like the model's inputs (plus labels)",
    )
    group.add_argument(
        "--data", type=Path, metavar="PATH", required=required,
        help="the data (required)" if required else "the data (default: the zoo model's own, else synthetic inputs)",
    )  # fmt: skip
    group.add_argument("--encoding", default="utf-8", help="text encoding of the data files (default utf-8)")
    group.add_argument("--text-column", help="column of the text (default: text, sentence, ... where present)")
    group.add_argument("--text-pair-column", help="column of the second text of a pair (sentence-pair models)")
    if labels:
        group.add_argument("--label-column", help="column of the labels (default: label where present); none: score against FP32")
    group.add_argument("--image-column", help="column of the images (default: image where present)")
    group.add_argument("--max-length", type=int, help="tokens per example (default: the data's 95th percentile, within the model's limit)")
    group.add_argument("--tokenizer", type=Path, metavar="DIR", help="folder of the tokenizer, when the model is an .onnx file")
    group.add_argument("--image-size", type=int, help="image side when the model has no image processor (default: the model's, else 224)")
    group.add_argument("--mean", help="per-channel mean subtracted from images scaled to [0, 1], e.g. 0.485,0.456,0.406")
    group.add_argument("--std", help="per-channel standard deviation images are divided by, e.g. 0.229,0.224,0.225")


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"{flag} {text!r} is not a comma-separated list of numbers, e.g. 0.5,0.5,0.5.") from None


def data_options(args: argparse.Namespace) -> DataOptions | None:
    """The `DataOptions` the flags describe, or None without ``--data``."""
    if args.data is None:
        stray = [f for f in ("text_column", "label_column", "image_column", "tokenizer", "max_length") if getattr(args, f, None) is not None]
        if stray:
            raise InvalidArgumentError(f"--{stray[0].replace('_', '-')} says how to read --data; give --data too.")
        return None
    if args.max_length is not None and args.max_length < 1:
        raise InvalidArgumentError("--max-length must be at least 1.")
    if args.image_size is not None and args.image_size < 1:
        raise InvalidArgumentError("--image-size must be at least 1.")
    std = _floats(args.std, "--std")
    if std is not None and any(v <= 0 for v in std):
        raise InvalidArgumentError("--std values must be positive.")
    return DataOptions(
        args.data, args.encoding, args.text_column, args.text_pair_column, getattr(args, "label_column", None), args.image_column,
        args.max_length, args.tokenizer, args.image_size, _floats(args.mean, "--mean"), std, getattr(args, "seed", 0),
    )  # fmt: skip


def zoo_for(args: argparse.Namespace):
    """The zoo, when the model is ``zoo:NAME`` or was tuned from one (importing it pulls in the
    examples' dependencies)."""
    if simq_ir.zoo_model_of(str(getattr(args, "model", ""))) is None:
        return None
    from simq.zoo import Zoo

    return Zoo(args.cache_dir)


def cache_root(args: argparse.Namespace) -> Path:
    """Where SimQ keeps what it builds once (zoo models under the default, baselines): ``--cache-dir``
    or the user cache directory."""
    return simq_ir.cache_root(args.cache_dir)


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        match = _SHAPE.match(item)
        if match is None:
            raise InvalidArgumentError(f"--input-shape {item!r} is not NAME=DIMS such as input_ids=1x128.")
        shapes[match[1]] = tuple(int(d) for d in match[2].split("x"))
    return shapes


def load_model(args: argparse.Namespace, console: Console) -> LoadedModel:
    """Load ``args.model`` (building a zoo model on first use, exporting a transformers folder once)
    with its input signature."""
    zoo = zoo_for(args)
    name = simq_ir.zoo_model_of(args.model)
    signature: dict[str, tuple[int, ...]] = dict(zoo.entry(name).signature) if zoo and name else {}
    source = simq_ir.resolve_source(args.model, zoo)  # builds a zoo model on first use, with its own display
    signature.update(parse_shapes(args.input_shape))
    with console.status(f"loading {args.model}"):
        model = simq_ir.load(source, cache_dir=cache_root(args))
    return LoadedModel(args.model, model, signature or None, source if source.suffix == ".onnx" else None, source if source.is_dir() else None)


#: How wide a table printed to a log or a pipe may be: rich lays out for 80 columns there, which
#: wrapped each configuration of the Pareto table over eight lines.
_LOG_WIDTH = 200


def table_console() -> Console:
    """A console for tables on stdout: a terminal's width, or in a log or pipe as wide as
    `_LOG_WIDTH` unless COLUMNS says otherwise."""
    console = Console()
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(width=_LOG_WIDTH)


def render_table(summary, title: str) -> Table:
    """A compile run's table (`simq.search.display_table`) as a rich table."""
    columns, rows = display_table(summary)
    table = Table(title=f"{title} ({summary['score']})", title_justify="left")
    for column in columns:
        # The speed-up's header names the bar ("× faster than ORT optimizer + dynamic INT8"): wrapped
        # over lines at its cells' width, not widening the table at the configurations' cost.
        table.add_column(column, overflow="fold", max_width=18 if column.startswith(SPEEDUP_HEADER) else None)
    for row in rows:
        table.add_row(*row)
    return table
