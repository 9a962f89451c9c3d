"""Entry point: argument parsing, subcommand dispatch and the error contract.

Errors a user can cause (`SimqError`) print one line and exit with status 2; a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from simq import __version__
from simq.cli import _compile, _inspect, _measure, _run, _show, _targets, _tune, _worker
from simq.errors import SimqError, first_line

__all__ = ["main"]

_COMMANDS = (_compile, _show, _run, _tune, _inspect, _targets, _measure, _worker)


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on bad usage already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simq", description="Hardware-aware model compiler.")
    parser.add_argument("--version", action="version", version=f"simq {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `simq` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if not args.debug:
        # Library loggers (the constant folder's, the exporter's) speak to developers, not users.
        for name in ("", "onnxscript", "torch", "transformers"):
            logging.getLogger(name).setLevel(logging.ERROR)
    err = Console(stderr=True)
    try:
        return args.run(args) or 0
    except SimqError as e:
        if args.debug:
            traceback.print_exc()
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # a library error SimQ did not turn into a sentence: still one line
        if args.debug:  # the traceback above it, and the same exit status
            traceback.print_exc()
        err.print(
            f"[bold red]error:[/] {escape(first_line(e, 300, typed=True))} "
            "(unexpected; simq --debug ... shows where)", highlight=False, soft_wrap=True,
        )  # fmt: skip
        return 2
