"""The final pass's timing, in a process started for it: ratios read as a user's own process reads them.

A process that has run a search (hundreds of sessions made and dropped, predictors fitted) reads
ratios to FP32 lower than a fresh process does on the same files: every fresh re-time of a
README run's front read its ratios higher than the run had, by a median of +0.3 % to +4.2 % over
eight processes, while two fresh processes agreed with each other within 1.5 % (docs/RETIME.md).
So the final pass times its models in a child process that loads nothing but the target, the
artifacts and the inputs, and reports each rotation's progress and the ratios back through a pipe.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Hashable, Mapping
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np

from simq.errors import SimqError, first_line
from simq.targets._api import Artifact, Target
from simq.targets._timing import MAX_ROUNDS, TOLERANCE, PairedRatio, timed_ratios

__all__ = ["timed_in_fresh_process"]

K = TypeVar("K", bound=Hashable)


def timed_in_fresh_process(
    target: Target,
    reference: Artifact,
    artifacts: Mapping[K, Artifact],
    inputs: Mapping[str, np.ndarray],
    *,
    tolerance: float = TOLERANCE,
    max_rounds: int = MAX_ROUNDS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[K, PairedRatio]:
    """`simq.targets.timed_ratios` of every artifact against `reference` on `inputs`, in a fresh
    (spawned) process with `target`'s runners; `progress` as there. The child is stopped if this
    process is interrupted; if it dies, a `SimqError` says how."""
    if not artifacts:
        return {}
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child, args=(sender, target, reference, dict(artifacts), dict(inputs), tolerance, max_rounds),
        name="simq-timing", daemon=True,
    )  # fmt: skip
    child.start()
    sender.close()  # the child holds the only writing end: its death ends our reads
    try:
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                child.join(timeout=10)
                raise SimqError(f"the timing process ended without its results (exit code {child.exitcode})") from None
            if kind == "turn" and progress is not None:
                progress(*payload)
            elif kind == "error":
                raise SimqError(f"timing in a fresh process failed: {payload}")
            elif kind == "done":
                return payload
    finally:
        receiver.close()
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
            child.join()


def _child(
    sender: Connection, target: Target, reference: Artifact, artifacts: dict[Any, Artifact], inputs: dict[str, np.ndarray],
    tolerance: float, max_rounds: int,
) -> None:  # fmt: skip
    try:
        runners = {k: target.runner(a, inputs) for k, a in artifacts.items()}
        ratios = timed_ratios(
            target.runner(reference, inputs), runners, tolerance=tolerance, max_rounds=max_rounds,
            progress=lambda done, total: sender.send(("turn", (done, total))),
        )  # fmt: skip
        sender.send(("done", ratios))
    except Exception as e:  # noqa: BLE001 - told to the parent, which raises it as a SimqError
        sender.send(("error", first_line(e, 300, typed=True)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        pass
    finally:
        sender.close()
