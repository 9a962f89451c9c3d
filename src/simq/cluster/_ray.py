"""`RayExecutor`: a search's candidates as Ray tasks; the tasks themselves, run on the workers."""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import ray.exceptions
from ray import cloudpickle

from simq.cluster._transfer import check_reachable, pack, unpack
from simq.errors import SimqError
from simq.search import Evaluation, ModelEvaluator, first_line
from simq.targets import Artifact, Fingerprint, PairedRatio, Target, compare, timed_ratio

__all__ = ["RayExecutor", "measure_resource"]

Config = Mapping[str, Hashable]

#: Retries of a task whose worker died (the task is then run again elsewhere; its result is
#: committed once, when it arrives).
MAX_RETRIES = 3


def measure_resource(fingerprint: Fingerprint) -> str:
    """The Ray custom resource that marks a node as measuring `fingerprint`'s target (the key
    holds the CPU, its ISA, the threads and the runtime version, hashed to a name)."""
    digest = hashlib.sha256(fingerprint.key().encode()).hexdigest()[:12]
    return f"simq-measure-{fingerprint.target}-{digest}"


class RayExecutor:
    """Evaluates candidates as Ray tasks: built and scored on any worker (one CPU each), timed on
    a measuring node of the target's fingerprint (all its CPUs, one model at a time).

    Args:
        address: A running cluster's address (``auto``: the one this machine belongs to); None
            starts a local cluster on this machine, which then measures the target itself.
        measured: Whether latency is measured (else predicted on the workers: no measuring node
            is needed).
        share: A folder every node sees at the same path: artifacts travel through it instead of
            Ray's object store.
        num_cpus: CPUs of a local cluster (default: all of this machine's).

    Latencies, the final pass's included (`time`), are measured on nodes of the driver's own
    fingerprint: the job's kernel and precision choices are made from it when it is prepared,
    and a search timed on one machine and re-timed on another would mix fingerprints.
    """

    def __init__(self, address: str | None = None, *, measured: bool = True, share: Path | None = None, num_cpus: int | None = None) -> None:
        self.address, self.measured, self.share, self.num_cpus = address, measured, share, num_cpus
        self._resource: str | None = None
        self._measure_cpus = 1.0
        self._job_key: int | None = None
        self._job_refs: list[ray.ObjectRef] = []

    # the cluster

    def connect(self, resources: Mapping[str, float] | None = None) -> None:
        """Join the cluster at `address`, or start a local one with custom `resources`
        (idempotent).

        Raises:
            SimqError: The cluster cannot be reached.
        """
        if ray.is_initialized():
            return
        settings: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        if self.address is not None:
            check_reachable(self.address)
        try:
            if self.address is None:
                ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count(), resources=dict(resources or {}), **settings)
            else:
                ray.init(address=self.address, **settings)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            raise SimqError(f"cannot join {where}: {first_line(e)}") from None

    def fingerprint(self, target: Target) -> str:
        """The driver's fingerprint key; with measured latency, after finding the cluster's
        measuring nodes for it (a local cluster measures on this machine).

        Raises:
            SimqError: No node of the cluster measures this fingerprint.
        """
        own = target.fingerprint()
        resource = measure_resource(own)
        self.connect({resource: 1.0} if self.measured else None)  # a local cluster is this machine: it measures
        if not self.measured:
            return own.key()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        measuring = [n for n in nodes if resource in n["Resources"]]
        if not measuring:
            others = sorted({name for n in nodes for name in n["Resources"] if name.startswith(f"simq-measure-{own.target}-")})
            seen = f" (the cluster measures {', '.join(others)}, another CPU, runtime or --threads)" if others else ""
            raise SimqError(
                f"no node of the Ray cluster measures {own.target} on this machine's fingerprint {resource}{seen}: start "
                f"`simq worker --target {own.target} --threads {own.threads} --address ADDRESS` on such a machine, run "
                "simq compile there, or pass --latency predicted."
            )
        self._resource = resource
        self._measure_cpus = min(n["Resources"].get("CPU", 1.0) for n in measuring)
        return own.key()

    def close(self) -> None:
        """Leave the cluster (a local one stops)."""
        self._job_refs, self._job_key = [], None
        if ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # evaluations

    def evaluate(self, evaluator: ModelEvaluator, configs: Sequence[Config]) -> Iterator[tuple[Config, Evaluation]]:
        """Submit every config at once; yield each evaluation as it finishes (timed, if latency
        is measured, on a measuring node after it was built). A task lost with its worker is
        retried by Ray; one that fails for good is an evaluation with an error."""
        if not configs:
            return
        self.connect()
        refs = self._job(evaluator.job)
        measured = evaluator.options.latency == "measured"
        if measured and self._resource is None:
            raise SimqError("measured latency needs the cluster's measuring node: call fingerprint(target) first.")
        share = str(self.share) if self.share is not None else None
        # a task in flight: its config, the evaluation it completes (a timing) or the artifact it
        # builds (a build)
        pending: dict[ray.ObjectRef, tuple[Config, Evaluation | None, ray.ObjectRef | None]] = {}
        for config in configs:
            evaluation_ref, artifact_ref = _build.options(num_cpus=1, max_retries=MAX_RETRIES).remote(
                refs, evaluator.options, dict(config), measured, share
            )
            pending[evaluation_ref] = (config, None, artifact_ref)
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            config, built, artifact_ref = pending.pop(ready)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayError as e:
                cause = getattr(e, "cause", None) or e
                stage = "building or scoring" if built is None else "timing"
                yield config, replace(built or Evaluation(), error=f"{stage} failed on the cluster: {first_line(cause)}")
                continue
            if built is None:  # built and scored
                evaluation: Evaluation = result
                if not measured or evaluation.error is not None:
                    yield config, evaluation
                    continue
                cached = evaluator.measured(evaluation.digest)
                if cached is not None:
                    yield config, replace(evaluation, metrics={**evaluation.metrics, **cached})
                    continue
                timing = _time.options(num_cpus=self._measure_cpus, resources={self._resource: 1}, max_retries=MAX_RETRIES).remote(
                    refs, artifact_ref
                )
                pending[timing] = (config, evaluation, None)
            else:  # timed
                paired, seconds = result
                latency = evaluator.record_timing(built.digest, paired)
                yield config, replace(built, metrics={**built.metrics, **latency}, seconds=built.seconds + seconds)

    def time(self, evaluator: ModelEvaluator, reference: Artifact, artifacts: Mapping[int, Artifact]) -> Iterator[tuple[int, PairedRatio]]:
        """The final pass's timing on the measuring node (one model at a time there), so the
        driver need not run on the target: each artifact travels as `evaluate`'s do, and FP32 is
        the measuring node's own lowering of the job's model (what `reference` is on the driver).

        Raises:
            SimqError: No measuring node was found (`fingerprint`), or a timing failed for good.
        """
        if not artifacts:
            return
        self.connect()
        if self._resource is None:
            raise SimqError("measured latency needs the cluster's measuring node: call fingerprint(target) first.")
        refs = self._job(evaluator.job)
        timing = _time.options(num_cpus=self._measure_cpus, resources={self._resource: 1}, max_retries=MAX_RETRIES)
        pending = {timing.remote(refs, pack(a, a.digest(), self.share), True): i for i, a in artifacts.items()}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready)
            try:
                paired, _seconds = ray.get(ready)
            except ray.exceptions.RayError as e:
                raise SimqError(f"the final timing of #{i} failed on the cluster: {first_line(getattr(e, 'cause', None) or e)}") from None
            yield i, paired

    def _job(self, job: Any) -> list[ray.ObjectRef]:
        """The job in the object store, put once (wrapped in a list, so that tasks receive the
        reference and each worker deserializes the job once, not once per task)."""
        if self._job_key != id(job):
            self._job_refs, self._job_key = [ray.put(_dumps(job))], id(job)
        return self._job_refs


def _dumps(job: Any) -> bytes:
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
def _build(refs: list[ray.ObjectRef], options: Any, config: dict, measured: bool, share: str | None) -> tuple[Evaluation, Any]:
    """Build, score and size one candidate (and predict its latency, unless it is measured: its
    artifact is then returned packed, for the measuring node)."""
    job = _cached_job(refs)
    evaluator = ModelEvaluator(job, options, _SCRATCH, None, "")
    packed: list[Any] = []

    def latency(config: Config, kind: str, artifact: Artifact, digest: str) -> dict[str, float]:
        if not measured:
            return evaluator.predicted_latency(config, kind, artifact)
        packed.append(pack(artifact, digest, Path(share) if share else None))
        return {}

    evaluation = evaluator.evaluate(evaluator.candidate_artifact(config), config, "candidate", latency)
    return replace(evaluation, worker=_where()), (packed[0] if packed else None)


@ray.remote
def _time(refs: list[ray.ObjectRef], packed: Any, final: bool = False) -> tuple[PairedRatio, float]:
    """Time one artifact interleaved with FP32 (lowered once per worker): (its ratio, seconds);
    `final`: to the final pass's tolerance (`timed_ratio`), else the search's rounds."""
    start = time.perf_counter()
    job = _cached_job(refs)
    key = refs[0].hex()
    if key not in _REFERENCES:
        folder = Path(tempfile.mkdtemp(prefix="reference-", dir=_SCRATCH))
        _REFERENCES[key] = job.target.runner(job.target.lower(job.model, folder), job.feed)
    with tempfile.TemporaryDirectory(prefix="timing-", dir=_SCRATCH) as tmp:
        artifact = unpack(packed, Path(tmp))
        paired = (timed_ratio if final else compare)(_REFERENCES[key], job.target.runner(artifact, job.feed))
    return paired, time.perf_counter() - start
