"""`simq compile MODEL --target T`: search pruning and quantization jointly, emit the Pareto set."""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from simq.cli._common import add_data_arguments, add_model_arguments, data_options, parse_shapes, render_table, table_console, zoo_for
from simq.cli._progress import CompileProgress
from simq.cli._recipe import add_recipe_argument, apply_recipe, write_recipe
from simq.errors import InvalidArgumentError, MissingDependencyError
from simq.eval import EarlyStopping
from simq.search import (
    ALGORITHMS,
    OBJECTIVES,
    CompileOptions,
    JobSpec,
    check_out,
    check_spec,
    compile_model,
    make_out,
    prepare_job,
    resolution_note,
)

__all__ = ["register", "run"]

def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compile",
        help="search pruning + quantization for a target; write the Pareto-optimal artifacts",
        description="Search elastic pruning (heads, FFN width, depth, channels) and per-node precision jointly "
        "for one target, and write the Pareto-optimal compiled models to --out: pareto/<id>/ (artifact + "
        "manifest.json), pareto.csv and report.html. Every evaluation is committed to --out/simq.sqlite as it "
        "finishes; --resume continues a killed run.",
    )
    add_model_arguments(parser)
    add_data_arguments(parser)
    spec, options = JobSpec(model=""), CompileOptions()  # the library's defaults are the flags' defaults
    parser.add_argument("--target", default=spec.target, help=f"target name (see simq targets; default {spec.target})")
    parser.add_argument("--threads", type=int, default=spec.threads, help=f"threads the target may use (default {spec.threads})")
    parser.add_argument(
        "--batch-size", type=_positive, metavar="N",
        help="examples per call where latency is timed: the deployment's batch (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--seq-len", type=_positive, metavar="N",
        help="tokens per example where latency is timed, every one attended (default: the data's length, 64 for the zoo's text)",
    )  # fmt: skip
    parser.add_argument(
        "--objectives", default=",".join(options.objectives),
        help=f"two or three of {','.join(OBJECTIVES)} (default {','.join(options.objectives)})",
    )  # fmt: skip
    parser.add_argument(
        "--budget", type=int, default=options.budget, help=f"candidates to validate: build, evaluate, measure (default {options.budget})"
    )
    parser.add_argument("--out", type=Path, default=Path("simq-out"), help="output folder (default simq-out)")
    parser.add_argument(
        "--algorithm", default=options.algorithm, choices=list(ALGORITHMS), help=f"search algorithm (default {options.algorithm})"
    )
    parser.add_argument(
        "--population", type=int, default=options.population, help=f"candidates validated per generation (default {options.population})"
    )
    parser.add_argument(
        "--steady-state", action="store_true",
        help="tell the search each result as it arrives and start the next candidate at once, --population in flight, "
        "instead of waiting for whole generations (with --ray: no worker idles at a generation's end; linas or random)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=options.seed, help=f"seeds the search and the carving of data roles: a run is repeatable (default {options.seed})"
    )
    parser.add_argument(
        "--max-accuracy-drop", type=_drop, default=options.max_accuracy_drop,
        help=f"keep only candidates at most this many points of the score below FP32 (default {options.max_accuracy_drop:g}; 'none': no limit)",
    )  # fmt: skip
    parser.add_argument(
        "--confidence", type=float, default=options.confidence,
        help="confidence that a published model is at most --max-accuracy-drop below FP32, judged paired on the "
        "validation split's examples (default: 0.9; 0.8 when the split holds at least 1,024 examples, 0.7 from 2,048; 0.5 trusts the point estimate)",
    )  # fmt: skip
    parser.add_argument(
        "--no-early-rejection", dest="early_rejection", action="store_false",
        help="score every candidate on the whole validation split (by default a candidate's scoring stops once a quarter or "
        f"half of the split puts it past --max-accuracy-drop with {EarlyStopping.confidence * 100:g}%% confidence)",
    )  # fmt: skip
    parser.add_argument(
        "--early-acceptance", action=argparse.BooleanOptionalAction, default=None,
        help="stop scoring a candidate once a quarter or half of the split puts it inside --max-accuracy-drop with "
        f"{EarlyStopping.confidence * 100:g}%% confidence (its accuracy is then that of those examples); by default on for "
        "a tuned folder whose drops are measured from the model before tuning, off otherwise",
    )  # fmt: skip
    parser.add_argument("--max-latency-ms", type=float, help="keep only candidates at most this many milliseconds per call")
    parser.add_argument(
        "--evaluator", metavar="MODULE:FUNCTION",
        help="score candidates with FUNCTION(artifact, run), higher is better: a float, or one score per example "
        "(default: accuracy on the data's labels; without labels top-1 agreement with FP32 for classifiers, else "
        "output cosine to FP32)",
    )  # fmt: skip
    parser.add_argument(
        "--latency", choices=["measured", "predicted"], default=options.latency,
        help=f"measure every candidate or predict with the target's cost model (default {options.latency})",
    )  # fmt: skip
    parser.add_argument(
        "--cost-model", type=Path, help="folder of the target's cost model (trained there on first use; default OUT/costmodel)"
    )
    parser.add_argument(
        "--cost-model-samples", type=int, default=spec.cost_model_samples,
        help=f"random sub-networks measured to train a new cost model (default {spec.cost_model_samples})",
    )  # fmt: skip
    parser.add_argument(
        "--time-limit", type=float, metavar="MINUTES",
        help="start no new candidate after this many minutes of search (per invocation; counted once the reference and the baselines are measured); the Pareto set of what was validated is then written as usual",
    )  # fmt: skip
    parser.add_argument(
        "--final-time-limit", type=_minutes, metavar="MINUTES", default=options.final_time_limit / 60,
        help=f"minutes the final pass may spend timing the published models once each has its minimum rounds (default {options.final_time_limit / 60:g}; 'none': until every interval is within its tolerance)",
    )  # fmt: skip
    parser.add_argument(
        "--final-models", type=int, default=options.final_models,
        help=f"models of the front to publish (re-time, re-score; default {options.final_models})",
    )
    parser.add_argument("--keep-slower", action="store_true", help="also publish models slower than FP32 (kept for their size)")
    parser.add_argument(
        "--withhold-unconfirmed", action="store_true",
        help="take back published models whose whole test interval lies beyond --max-accuracy-drop (default: publish "
        "and mark them; withholding selects on the test split)",
    )  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="build, score and time candidates as Ray tasks: alone, on a local cluster of this machine; ADDRESS "
        "(or auto) joins a running cluster, whose measuring nodes (simq worker) time them",
    )  # fmt: skip
    parser.add_argument(
        "--ray-share", type=Path, metavar="DIR",
        help="with --ray: a folder every node sees at the same path, for artifacts (default: Ray's object store)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", choices=["auto", "original", "tuned"], default=spec.reference,
        help="for a simq tune folder: measure accuracy drops from the model before tuning, from the tuned model, or auto: "
        "the original unless it scores near chance (default auto)",
    )  # fmt: skip
    parser.add_argument("--untrained", action="store_true", help="for a simq tune folder: also search widths and depths tuning did not train")
    parser.add_argument("--no-prune", action="store_true", help="search quantization only")
    parser.add_argument("--no-quantize", action="store_true", help="search pruning only")
    parser.add_argument(
        "--no-head-refit", action="store_true",
        help="keep a pruned candidate's classifier head as trained (by default it is refit on its own features of the data's labelled train rows)",
    )  # fmt: skip
    parser.add_argument(
        "--no-baselines", action="store_true",
        help="skip the off-the-shelf baselines (ORT fusions and INT8 quantizers; OpenVINO's default precision and NNCF)",
    )  # fmt: skip
    add_recipe_argument(parser)
    parser.set_defaults(run=functools.partial(run, parser=parser))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _number_or_none(unit: str) -> Callable[[str], float | None]:
    """An argument type: a number of `unit`, or 'none' (no limit)."""

    def parse(text: str) -> float | None:
        if text.lower() == "none":
            return None
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}, nor 'none'") from None

    return parse


_drop, _minutes = _number_or_none("points"), _number_or_none("minutes")


# The library speaks of options; the CLI names its flags: a library message that names an option
# is shown with the flag the user typed.
_FLAGS = {
    "the budget": "--budget", "a population": "--population", "a steady-state search": "--steady-state", "the accepted accuracy drop": "--max-accuracy-drop",
    "a latency bound": "--max-latency-ms", "a time limit": "--time-limit", "the final pass's time limit": "--final-time-limit", "at least one model of the front": "--final-models",
    "the confidence of the accuracy limit": "--confidence", "the target needs": "--threads",
    "without pruning and quantization": "--no-prune and --no-quantize", "a cost model needs": "--cost-model-samples",
    "the deployment batch size": "--batch-size", "the deployment sequence length": "--seq-len",
}  # fmt: skip


_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-]+:\d+")


def _with_flags(check: Callable[[], object]) -> None:
    """Run a library check; its error names the flag the user typed."""
    try:
        check()
    except InvalidArgumentError as e:
        message = str(e)
        flag = next((f for phrase, f in _FLAGS.items() if message.lower().startswith(phrase)), None)
        raise InvalidArgumentError(f"{flag}: {message}" if flag else message) from None


def _options(args: argparse.Namespace) -> CompileOptions:
    options = CompileOptions(
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()),
        budget=args.budget, algorithm=args.algorithm, population=args.population, steady_state=args.steady_state, seed=args.seed,
        max_accuracy_drop=args.max_accuracy_drop, confidence=args.confidence, early_rejection=args.early_rejection,
        early_acceptance=args.early_acceptance,
        max_latency_ms=args.max_latency_ms, latency=args.latency,
        time_limit=args.time_limit * 60 if args.time_limit is not None else None, final_models=args.final_models,
        final_time_limit=args.final_time_limit * 60 if args.final_time_limit is not None else None,
        keep_slower=args.keep_slower, withhold_unconfirmed=args.withhold_unconfirmed,
    )  # fmt: skip
    _with_flags(options.check)
    if args.ray_share is not None and args.ray is None:
        raise InvalidArgumentError("--ray-share goes with --ray.")
    if args.ray not in (None, "local", "auto") and not _ADDRESS.fullmatch(args.ray):
        # `simq compile --ray model.onnx`: argparse read the model as the optional address.
        raise InvalidArgumentError(
            f"--ray {args.ray} is not a cluster address (auto or host:port); to compile it on a local cluster, "
            f"put the model first: simq compile {args.ray} --ray"
        )
    return options


def _executor(args: argparse.Namespace, options: CompileOptions):
    """The executor of the candidates' evaluations: this process, or a Ray cluster (--ray)."""
    if args.ray is None:
        return contextlib.nullcontext(None)
    try:
        from simq.cluster import RayExecutor, check_share
    except ImportError:
        raise MissingDependencyError("--ray needs Ray: pip install 'simq[ray]'.") from None
    if args.ray_share is not None:
        check_share(args.ray_share)
    address = None if args.ray == "local" else args.ray
    return RayExecutor(address, measured=options.latency == "measured", share=args.ray_share)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    args = apply_recipe(parser, args, getattr(args, "argv", []))
    options = _options(args)
    console = Console(stderr=True)
    spec = JobSpec(
        model=args.model, target=args.target, threads=args.threads, data=data_options(args),
        input_shapes=parse_shapes(args.input_shape), batch_size=args.batch_size, seq_len=args.seq_len, evaluator=args.evaluator, prune=not args.no_prune,
        quantize=not args.no_quantize, baselines=not args.no_baselines, cache_dir=args.cache_dir, seed=args.seed,
        cost_model=(args.cost_model or args.out / "costmodel") if options.latency == "predicted" else None,
        cost_model_samples=args.cost_model_samples, reference=args.reference, untrained=args.untrained,
        head_refit=not args.no_head_refit,
    )  # fmt: skip
    if options.max_accuracy_drop is not None and 0 < options.max_accuracy_drop < 0.1:
        console.print(
            f"[yellow]note:[/] --max-accuracy-drop is in points of the score (1 = one percentage point of accuracy): "
            f"{options.max_accuracy_drop:g} allows {options.max_accuracy_drop:g} of a point. NNCF's max_drop=0.01 is 1 here."
        )
    _with_flags(spec.check)
    check_out(args.out, args.resume)
    target = check_spec(spec)  # the data, the evaluator and the target, before minutes of work
    planned = target.fingerprint()
    with _executor(args, options) as executor:
        if executor is not None:  # the cluster and its measuring nodes; the job is planned for what they measure
            target = executor.target_for(target)
            if target.fingerprint() != planned:
                console.print(f"planning for the cluster's measuring node: {target.fingerprint().key()}", highlight=False)
        with console.status("preparing") as status:
            samples = lambda phase, done, total, *_: status.update(f"measuring the cost model's samples ({done}/{total})")  # noqa: E731
            prepared = prepare_job(spec, zoo_for(args), status=status.update, checked=target, progress=samples)
        console.print(prepared.describe())
        options = options.resolved(prepared.job.evaluator, prepared.job.accuracy_reference is not None)  # the confidence the note and the run judge at
        note = resolution_note(prepared.job.evaluator, options.max_accuracy_drop, options.confidence)
        for line in (*prepared.warnings, *([note] if note else [])):
            console.print(f"[yellow]note:[/] {line}")
        make_out(args.out)
        write_recipe(parser, args, args.out / "recipe.yaml")
        job = prepared.job
        with CompileProgress(console, job.pipeline) as progress:
            result = compile_model(job, options, args.out, resume=args.resume, progress=progress, executor=executor)
    _summary(console, result)
    return 0


def _summary(console: Console, result) -> None:
    out = table_console()
    out.print(render_table(result.summary, f"Pareto set ({sum(r.kind == 'candidate' for r in result.pareto)} of {result.evaluated} validated candidates)"))
    if result.reference_note:
        out.print(result.reference_note[0].upper() + result.reference_note[1:])
    if result.summary.get("headline"):
        out.print(result.summary["headline"])
    if result.stopped_early:
        console.print(
            f"the search stopped at its {result.stopped_early}; --resume (with a larger --budget or --time-limit) continues it"
        )
    console.print(f"wrote {result.out / 'pareto'}/, {result.out / 'pareto.csv'} and {result.report}")
