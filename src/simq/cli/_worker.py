"""`simq worker --target NAME`: this machine joins (or heads) a Ray cluster as a measuring node."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from rich.console import Console

from simq.errors import InvalidArgumentError, MissingDependencyError
from simq.targets import TargetRegistry

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker",
        help="make this machine a Ray node that measures a target's latency for simq compile --ray",
        description="Start a Ray node on this machine (ray start) carrying the custom resource named after the "
        "target's fingerprint here, so that simq compile --ray times candidates on it, one at a time with all its "
        "CPUs. Run simq compile on a machine of the same fingerprint (it re-times the Pareto set itself).",
    )
    parser.add_argument("--target", default="ort-cpu", help="target measured here (default ort-cpu)")
    parser.add_argument("--threads", type=int, default=2, help="threads the target uses, as simq compile's --threads (default 2)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--address", help="join the cluster at this address (host:port of its head)")
    where.add_argument("--head", action="store_true", help="start a new cluster, headed by this machine")
    parser.add_argument("--num-cpus", type=int, help="CPUs Ray may use on this node (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the ray start command instead of running it")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise InvalidArgumentError("--threads must be at least 1.")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise InvalidArgumentError("--num-cpus must be at least 1.")
    try:
        from simq.cluster import measure_resource
    except ImportError:
        raise MissingDependencyError("simq worker needs Ray: pip install 'simq[ray]'.") from None
    fingerprint = TargetRegistry().get(args.target, threads=args.threads).fingerprint()
    resource = measure_resource(fingerprint)
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise MissingDependencyError("the ray command is not on the PATH: pip install 'simq[ray]'.")
    command = [ray, "start", *(["--head"] if args.head else ["--address", args.address])]
    command += ["--resources", json.dumps({resource: 1}), "--block"]
    if args.num_cpus is not None:
        command += ["--num-cpus", str(args.num_cpus)]
    console = Console(stderr=True)
    console.print(f"measuring node for {fingerprint.key()}\nresource {resource}", highlight=False, soft_wrap=True)
    if args.dry_run:
        print(shlex.join(command))
        return 0
    sys.stderr.flush()
    os.execv(ray, command)  # ray start --block: runs until stopped (Ctrl-C or ray stop)
