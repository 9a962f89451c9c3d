"""`simq targets`: the targets SimQ can compile for, their fingerprints and precisions."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from simq.errors import SimqError
from simq.passes.quant import PRECISIONS, WHOLE_MODEL
from simq.targets import TargetRegistry

__all__ = ["register", "run"]

_OPS = ("MatMul", "Gemm", "Conv", "Gather", "Attention")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "targets",
        help="list the hardware targets (built-in and plugged-in)",
        description="List the targets simq compile can use: the built-in ones and those plugged in through the "
        "simq.targets entry-point group, each with this machine's fingerprint (CPU, ISA flags, runtime) and the "
        "precisions it offers here.",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for info in TargetRegistry().available().values():
        row = {"name": info.name, "provider": info.provider, "reference": info.reference}
        try:
            target = TargetRegistry().get(info.name)
            row["fingerprint"] = target.fingerprint().__dict__
            row["precisions"] = {op: [p for p in PRECISIONS if target.supports(op, p)] for op in _OPS}
            row["precisions"]["whole model"] = [p for p in ("fp32", "bf16") if target.supports(WHOLE_MODEL, p)]
        except SimqError as e:  # a target whose runtime is missing is listed, not fatal
            row["error"] = str(e)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title="Targets", title_justify="left")
    for col in ("name", "provider", "runtime", "CPU / ISA / threads", "precisions"):
        table.add_column(col)
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], row["provider"], "", f"[red]{row['error']}[/]", "")
            continue
        f = row["fingerprint"]
        precisions = "; ".join(f"{op} {'/'.join(p)}" for op, p in row["precisions"].items())
        table.add_row(
            row["name"], row["provider"], f"{f['runtime']} {f['runtime_version'].split('-')[0]}",
            f"{f['cpu']} / {','.join(f['isa'])} / {f['threads']} of {f['cores']}", precisions,
        )  # fmt: skip
    Console().print(table)
    return 0
