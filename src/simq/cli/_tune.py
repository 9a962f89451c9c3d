"""`simq tune MODEL --data ... --out OUT`: elastic fine-tuning before `simq compile OUT`."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from simq import ir as simq_ir
from simq.cli._common import add_data_arguments, cache_root, data_options, parse_shapes, zoo_for
from simq.cli._progress import Progressive
from simq.errors import InvalidArgumentError
from simq.search import JobSpec, examples_for
from simq.tune import TuneOptions, transformers_source, tune

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tune",
        help="fine-tune a model elastically so that its pruned sub-networks keep their accuracy",
        description="Fine-tune a transformers classifier (or zoo:minilm-tweets) on the train split of --data as a "
        "weight-sharing super-network: heads and FFN neurons sorted by importance, each step the largest network "
        "on the labels and the smallest and random sub-networks distilled from it, layers dropped at random. "
        "Then `simq compile OUT` searches its sub-networks in first-k order.",
    )
    parser.add_argument("model", help="a transformers sequence/image classification folder, or zoo:minilm-tweets or zoo:digits-vit")
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"), help="where zoo models and exports are kept")
    parser.add_argument("--input-shape", action="append", default=[], help=argparse.SUPPRESS)
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder for the tuned model, its ONNX export and tune.json")
    defaults = TuneOptions()
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"passes over the train split (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"examples per batch (default {defaults.batch_size})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"AdamW learning rate, after warm-up (default {defaults.lr:g})")
    parser.add_argument("--accumulation", type=int, default=defaults.accumulation, help=f"batches per optimizer step (default {defaults.accumulation})")
    parser.add_argument(
        "--random-subnets", type=int, default=defaults.random_subnets,
        help=f"random sub-networks per step beside the largest and the smallest (sandwich rule; default {defaults.random_subnets})",
    )  # fmt: skip
    parser.add_argument("--min-width", type=float, default=defaults.min_width, help=f"share of heads and neurons the smallest keeps (default {defaults.min_width})")
    parser.add_argument("--min-depth", type=float, default=defaults.min_depth, help=f"share of the layers the smallest keeps (default {defaults.min_depth})")
    parser.add_argument("--layer-drop", type=float, default=defaults.layer_drop, help=f"probability a random sub-network is shallower (default {defaults.layer_drop})")
    parser.add_argument(
        "--distil-hidden", type=float, default=defaults.distil_hidden, metavar="WEIGHT",
        help=f"also distil every kept layer's output from the largest network's, with this loss weight (default {defaults.distil_hidden:g}; 0: logits only)",
    )  # fmt: skip
    parser.add_argument(
        "--train-embeddings", action=argparse.BooleanOptionalAction, default=defaults.train_embeddings,
        help="also train the embedding tables (default: yes; --no-train-embeddings keeps them as given: steps about 10 %% faster on a MiniLM, its smallest sub-networks about a point worse)",
    )  # fmt: skip
    parser.add_argument(
        "--time-limit", type=float, metavar="MINUTES", help="minutes for the whole run, validations included: tune plans the steps that fit and stops after them",
    )
    parser.add_argument(
        "--validation-sample", type=int, default=defaults.validation_sample, metavar="ROWS",
        help=f"validation rows scored after every epoch but the last, which scores them all (default {defaults.validation_sample}; 0: all every time)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=defaults.threads, help=f"torch threads (default {defaults.threads})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seeds order, sub-networks and the carving of data roles (default {defaults.seed})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = TuneOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, accumulation=args.accumulation,
        random_subnets=args.random_subnets, min_width=args.min_width, min_depth=args.min_depth, layer_drop=args.layer_drop,
        distil_hidden=args.distil_hidden, train_embeddings=args.train_embeddings,
        time_limit=args.time_limit * 60 if args.time_limit is not None else None, validation_sample=args.validation_sample,
        threads=args.threads, seed=args.seed,
    )  # fmt: skip
    options.check()
    data = data_options(args)
    zoo = zoo_for(args)
    if data is None and zoo is None:
        raise InvalidArgumentError("give --data with labels: tuning trains on its train split.")
    console = Console(stderr=True)
    with console.status(f"loading {args.model}"):
        name = simq_ir.zoo_name(args.model)
        if zoo is not None and name is not None:
            source = zoo.torch_source(name)
            path = zoo.path(name)
            folder = None
        else:
            path = simq_ir.resolve_source(args.model)
            if not path.is_dir():
                found = "not an .onnx file" if path.exists() else "and nothing exists at that path"
                raise InvalidArgumentError(f"{args.model}: simq tune needs the PyTorch model (a transformers folder or zoo:minilm-tweets), {found}.")
            source, folder = transformers_source(path), path
        model = simq_ir.load(path, cache_dir=cache_root(args))
        spec = JobSpec(model=args.model, data=data, input_shapes=parse_shapes(args.input_shape), cache_dir=args.cache_dir, seed=args.seed)
        examples, _, _ = examples_for(spec, model, folder, zoo)
    console.print(examples.describe())
    with _Bar(console) as bar:
        result = tune(source, examples, args.out, options, resume=args.resume, progress=bar)
    last = result.curves[-1] if result.curves else {}
    console.print(
        f"tuned {result.epochs_done} epoch(s){' (stopped at the time limit)' if result.stopped_early else ''}: validation accuracy "
        f"{last.get('validation_largest', float('nan')):.2f} % (largest), {last.get('validation_smallest', float('nan')):.2f} % (smallest)"
        f" on {last.get('validation_rows', 0):,} rows"
    )
    if result.sub_networks == "masked":
        console.print("sub-networks ran masked, at full width (slicing this model's projections did not compute the same): steps cost what the largest network costs")
    data = "" if simq_ir.zoo_name(args.model) else " --data ..."  # a zoo model's own splits carry over
    console.print(f"wrote {args.out}; next: simq compile {args.out}{data}")
    return 0


class _Bar(Progressive):
    """A progress bar on a terminal; in a log or a pipe one plain line per epoch and every few
    minutes (step, loss, the last validation of the largest and smallest sub-networks)."""

    #: Seconds between plain progress lines within an epoch.
    EVERY = 120

    def __init__(self, console: Console) -> None:
        super().__init__(
            console, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        )  # fmt: skip
        self.last = self.start
        self.task = None
        self.info = ""

    def __call__(self, phase: str, done: int, total: int, values) -> None:
        if phase == "validated":
            self.info = f"val {values['validation_largest']:.1f} % largest, {values['validation_smallest']:.1f} % smallest on {values['validation_rows']:,} rows"
            if self.plain:
                self.line(f"epoch {values['epoch']} done: loss {values['loss']:.3f}, {self.info}")
        elif phase == "training":
            loss = f"epoch {values['epoch']} step {done}/{total} loss {values['loss']:.3f}"
            if self.plain:
                if time.monotonic() - self.last >= self.EVERY:
                    self.last = time.monotonic()
                    self.line(f"{loss}  {self.info}".rstrip())
                return
            if self.task is None:
                self.task = self.bar.add_task("tuning", total=total, info="")
            self.bar.update(self.task, completed=done, total=total, info=f"{loss}  {self.info}")
