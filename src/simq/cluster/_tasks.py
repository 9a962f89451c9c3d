"""The job as it travels to Ray workers, and the tasks they run: build and score a candidate, time
an artifact beside FP32 on a measuring node, time the final pass's front there, make the target there."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray import cloudpickle

from simq.cluster._transfer import pack, unpack
from simq.errors import SimqError
from simq.search import Evaluation, ModelEvaluator, first_line
from simq.targets import Artifact, PairedRatio, Target, compare, timed_in_fresh_process

__all__ = ["build_task", "dumps", "front_task", "made_there", "time_task"]

Config = Mapping[str, Hashable]


def dumps(job: Any) -> bytes:
    """The job pickled. An IR graph's nodes and values refer to each other, so pickling one
    recurses about as deep as the graph is long (a 6-layer MiniLM overflows Python's default
    limit): it runs in a thread with a large stack and a high recursion limit. Unpickling does
    not recurse."""
    result: dict[str, Any] = {}

    def dump() -> None:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 1_000_000))
        try:
            result["bytes"] = cloudpickle.dumps(job)
        except Exception as e:  # noqa: BLE001 - reported in the caller's thread
            result["error"] = e
        finally:
            sys.setrecursionlimit(limit)

    previous = threading.stack_size(1 << 30)
    try:
        thread = threading.Thread(target=dump, name="simq-pickle-job")
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if "error" in result:
        raise SimqError(f"the compile job cannot be sent to the cluster: {first_line(result['error'])}") from result["error"]
    return result["bytes"]


# On the workers

_JOBS: dict[str, Any] = {}
_REFERENCES: dict[str, Any] = {}
_SCRATCH = Path(tempfile.mkdtemp(prefix="simq-worker-"))
atexit.register(shutil.rmtree, _SCRATCH, True)


def _cached_job(refs: list[ray.ObjectRef]) -> Any:
    key = refs[0].hex()
    if key not in _JOBS:
        _JOBS.clear()  # a worker serves one job at a time
        _REFERENCES.clear()
        _JOBS[key] = cloudpickle.loads(ray.get(refs[0]))
    return _JOBS[key]


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@ray.remote(num_returns=2)
def _build(
    refs: list[ray.ObjectRef], options: Any, config: dict, measured: bool, share: str | None, early: Any = None
) -> tuple[Evaluation, Any]:
    """Build, score and size one candidate (and predict its latency, unless it is measured: its
    artifact is then returned packed, for the measuring node); `early`: the driver's
    `EarlyStopping`, if any."""
    job = _cached_job(refs)
    evaluator = ModelEvaluator(job, options, _SCRATCH, None, "")
    evaluator.early = early
    packed: list[Any] = []

    def latency(config: Config, kind: str, artifact: Artifact, digest: str) -> dict[str, float]:
        if not measured:
            return evaluator.predicted_latency(config, kind, artifact)
        packed.append(pack(artifact, digest, Path(share) if share else None))
        return {}

    evaluation = evaluator.evaluate(evaluator.candidate_artifact(config), config, "candidate", latency)
    return replace(evaluation, worker=_where()), (packed[0] if packed else None)


@ray.remote
def _made_there(name: str, threads: int) -> Target:
    """The target as made on this (measuring) node, with what it reads and times of the machine
    (its fingerprint, the kernel choices its lowering times) settled here."""
    from simq.targets import TargetRegistry

    target = TargetRegistry().get(name, threads=threads)
    target.fingerprint()
    target.lowering({})
    return target


@ray.remote
def _time(refs: list[ray.ObjectRef], packed: Any) -> tuple[PairedRatio, float]:
    """Time one artifact interleaved with FP32 (lowered once per worker) for the search's rounds:
    (its ratio, seconds)."""
    start = time.perf_counter()
    job = _cached_job(refs)
    key = refs[0].hex()
    if key not in _REFERENCES:
        folder = Path(tempfile.mkdtemp(prefix="reference-", dir=_SCRATCH))
        _REFERENCES[key] = job.target.runner(job.target.lower(job.model, folder), job.feed)
    with tempfile.TemporaryDirectory(prefix="timing-", dir=_SCRATCH) as tmp:
        artifact = unpack(packed, Path(tmp))
        paired = compare(_REFERENCES[key], job.target.runner(artifact, job.feed))
    return paired, time.perf_counter() - start


@ray.remote
def _time_front(refs: list[ray.ObjectRef], packed: list[Any], time_limit: float | None) -> list[PairedRatio]:
    """The final pass's timing on the measuring node, as on one machine: every artifact against
    FP32 (lowered here) in rotation, in a process started for it (`timed_in_fresh_process`), not in
    this long-lived worker; the ratios in `packed`'s order."""
    job = _cached_job(refs)
    with tempfile.TemporaryDirectory(prefix="final-", dir=_SCRATCH) as tmp:
        folders = [Path(tmp) / str(k) for k in range(len(packed) + 1)]
        for folder in folders:
            folder.mkdir()
        reference = job.target.lower(job.model, folders[-1])
        artifacts = {k: unpack(p, folders[k]) for k, p in enumerate(packed)}
        ratios = timed_in_fresh_process(job.target, reference, artifacts, job.feed, time_limit=time_limit)
    return [ratios[k] for k in range(len(packed))]


#: The tasks under the names the executor uses (Ray titles a busy worker ``ray::_build`` etc.).
build_task, time_task, front_task, made_there = _build, _time, _time_front, _made_there
