"""`simq show OUT`: a finished compile run's table and verdict, read back without recomputing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simq.cli._common import render_table, table_console
from simq.errors import InvalidArgumentError
from simq.search import SUMMARY_FILE

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "show",
        help="print a finished compile run (its table and verdict) without recomputing",
        description="Read OUT/summary.json of a finished simq compile run and print its table (each model's score with "
        "its paired drop and 95 %% interval, latency with its interval, size) and its verdict against the strongest "
        "baseline. --json prints the summary itself.",
    )  # fmt: skip
    parser.add_argument("out", type=Path, help="the --out folder of a simq compile run")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.out / SUMMARY_FILE
    if not path.is_file():
        hint = "it is still running or was stopped; --resume finishes it" if (args.out / "simq.sqlite").is_file() else "give the --out folder of simq compile"
        raise InvalidArgumentError(f"{args.out} holds no finished compile run ({hint}).")
    try:
        summary = json.loads(path.read_text())
    except ValueError as e:
        raise InvalidArgumentError(f"{path} is damaged ({e}); rerun simq compile ... --resume to write it again.") from None
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    console = table_console()
    console.print(f"[bold]{summary['model']}[/] for {summary['target']} · {summary['fingerprint']}")
    if summary.get("data"):
        console.print(f"data: {summary['data']}")
    console.print(render_table(summary, str(args.out)))
    if summary.get("headline"):
        console.print(summary["headline"])
    return 0
