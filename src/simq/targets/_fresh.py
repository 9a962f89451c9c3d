"""The final pass's timing, in a process started for it: ratios read as a user's own process reads them.

A process that has run a search (hundreds of sessions made and dropped, predictors fitted) reads
ratios to FP32 lower than a fresh process does on the same files: every fresh re-time of a
README run's front read its ratios higher than the run had, by a median of +0.3 % to +4.2 % over
eight processes, while two fresh processes agreed with each other within 1.5 % (docs/RETIME.md).
So the final pass times its models in a new Python process that loads nothing but the target,
the artifacts and the inputs (sent pickled on its stdin), and reports each rotation's progress
and the ratios as JSON lines on its stdout.

The child is a plain ``python -c`` process, not a `multiprocessing` one: those re-import the
caller's main script, and a user's script that calls `simq.compile` without a ``__main__`` guard
(the README's example) would run its whole compile again in the child.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict
from typing import TypeVar

import numpy as np

from simq.errors import SimqError, first_line
from simq.targets._api import Artifact, Target
from simq.targets._timing import MAX_ROUNDS, TOLERANCE, PairedRatio, timed_ratios

__all__ = ["timed_in_fresh_process"]

K = TypeVar("K", bound=Hashable)

_CHILD = "from simq.targets._fresh import child_main; child_main()"


def timed_in_fresh_process(
    target: Target,
    reference: Artifact,
    artifacts: Mapping[K, Artifact],
    inputs: Mapping[str, np.ndarray],
    *,
    tolerance: float = TOLERANCE,
    max_rounds: int = MAX_ROUNDS,
    progress: Callable[[int, int], None] | None = None,
    time_limit: float | None = None,
) -> dict[K, PairedRatio]:
    """`simq.targets.timed_ratios` of every artifact against `reference` on `inputs`, in a fresh
    Python process with `target`'s runners; `progress` and `time_limit` (seconds of timing, counted
    in the child once its sessions are made) as there. The child is stopped if this
    process is interrupted; if it fails or dies, a `SimqError` says how. A target whose class
    lives in the caller's main script cannot be loaded by another process: it is timed here."""
    if not artifacts:
        return {}
    if type(target).__module__ == "__main__":
        return _timed_here(target, reference, artifacts, inputs, tolerance, max_rounds, progress, time_limit)
    keys = list(artifacts)
    job = pickle.dumps((target, reference, [artifacts[k] for k in keys], dict(inputs), tolerance, max_rounds, time_limit))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # what this process imports from
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        try:
            try:
                child.stdin.write(job)
                child.stdin.close()
            except BrokenPipeError:  # it died before reading: its exit code and stderr say why
                pass
            for line in child.stdout:
                try:
                    message = json.loads(line)
                except ValueError:  # a library printing to stdout
                    continue
                if "turn" in message and progress is not None:
                    progress(*message["turn"])
                elif "error" in message:
                    raise SimqError(f"timing in a fresh process failed: {message['error']}")
                elif "done" in message:
                    return {k: PairedRatio(**fields) for k, fields in zip(keys, message["done"])}
            child.wait()
            stderr.seek(0)
            said = [line.strip() for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
            raise SimqError(
                f"the timing process ended without its results (exit code {child.returncode})" + (f": {said[-1]}" if said else "")
            )
        finally:
            if child.poll() is None:
                child.terminate()
            child.wait()


def _timed_here(
    target: Target, reference: Artifact, artifacts: Mapping[K, Artifact], inputs: Mapping[str, np.ndarray],
    tolerance: float, max_rounds: int, progress: Callable[[int, int], None] | None, time_limit: float | None,
) -> dict[K, PairedRatio]:  # fmt: skip
    """`timed_ratios` with `target`'s runners, in this process."""
    runners = {k: target.runner(a, inputs) for k, a in artifacts.items()}
    return timed_ratios(
        target.runner(reference, inputs), runners, tolerance=tolerance, max_rounds=max_rounds, progress=progress, time_limit=time_limit
    )


def child_main() -> None:
    """The child's side: read the job from stdin, time it, write JSON lines to stdout."""

    def say(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        target, reference, artifacts, inputs, tolerance, max_rounds, time_limit = pickle.load(sys.stdin.buffer)
        ratios = _timed_here(
            target, reference, dict(enumerate(artifacts)), inputs, tolerance, max_rounds,
            lambda done, total: say({"turn": [done, total]}), time_limit,
        )  # fmt: skip
        say({"done": [asdict(ratios[i]) for i in range(len(artifacts))]})
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - told to the parent, which raises it as a SimqError
        say({"error": first_line(e, 300, typed=True)})
