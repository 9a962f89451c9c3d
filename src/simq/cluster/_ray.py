"""`RayExecutor`: a search's candidates as Ray tasks (the tasks themselves are in `_tasks.py`)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import ray.exceptions

from simq.cluster._tasks import build_task, dumps, front_task, made_there, time_task
from simq.cluster._transfer import check_reachable, pack
from simq.errors import SimqError
from simq.search import Evaluation, ModelEvaluator, first_line
from simq.targets import Artifact, Fingerprint, PairedRatio, Target

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


def _cause(error: Exception) -> str:
    """What went wrong in a failed task, in a line: Ray wraps the task's own exception as `cause`."""
    return first_line(getattr(error, "cause", None) or error)


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

    Latencies, the final pass's included (`time`), and the reference's and baselines', are
    measured on nodes of one fingerprint: the driver's own where the cluster measures it, else
    the one the cluster measures the target on. The job's kernel and precision choices are made
    for that fingerprint (`target_for`: a target object made on the measuring node), so the
    driver may sit on any machine.
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

    def target_for(self, target: Target) -> Target:
        """The target to plan the job for: `target` itself where a measuring node shares this
        machine's fingerprint (or latency is predicted), else the target as made on the one
        fingerprint the cluster measures it on (its ISA, its timed kernel choices), so that a
        driver on any machine plans what the measuring node times.

        Raises:
            SimqError: The cluster measures this target on no fingerprint, or on several other
                than this machine's.
        """
        own = target.fingerprint()
        resource = measure_resource(own)
        self.connect({resource: 1.0} if self.measured else None)  # a local cluster is this machine: it measures
        if not self.measured:
            return target
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        offered = sorted({name for n in nodes for name in n["Resources"] if name.startswith(f"simq-measure-{own.target}-")})
        if resource not in offered and len(offered) != 1:
            seen = f" (it measures {', '.join(offered)}: run the driver on one of those machines)" if offered else ""
            raise SimqError(
                f"no node of the Ray cluster measures {own.target} on this machine's fingerprint {resource}{seen}: start "
                f"`simq worker --target {own.target} --threads {own.threads} --address ADDRESS` on a machine to measure on, "
                "or pass --latency predicted."
            )
        if resource not in offered:
            remote = made_there.options(num_cpus=0, resources={offered[0]: 1}, max_retries=MAX_RETRIES).remote(own.target, own.threads)
            try:
                target = ray.get(remote)
            except ray.exceptions.RayError as e:
                raise SimqError(f"the measuring node cannot make the {own.target} target: {_cause(e)}") from None
            resource = measure_resource(target.fingerprint())
            if resource != offered[0]:
                raise SimqError(f"the cluster measures {own.target} on {offered[0]}, with other --threads than {own.threads}: pass its --threads.")
        self._resource = resource
        self._measure_cpus = min(n["Resources"].get("CPU", 1.0) for n in nodes if resource in n["Resources"])
        return target

    def fingerprint(self, target: Target) -> str:
        """The fingerprint key latencies are measured on: `target`'s, which must be one the
        cluster measures (`target_for` gives such a target).

        Raises:
            SimqError: No node of the cluster measures this fingerprint.
        """
        if self.measured and measure_resource(target.fingerprint()) != self._resource:
            planned = self.target_for(target)
            if planned.fingerprint() != target.fingerprint():
                raise SimqError(
                    f"the job is planned for {target.fingerprint().key()}, but the cluster measures {planned.fingerprint().key()}: "
                    "prepare it for the target RayExecutor.target_for gives."
                )
        elif not ray.is_initialized():
            self.connect()
        return target.fingerprint().key()

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

    def evaluate(
        self, evaluator: ModelEvaluator, configs: Iterable[Config], in_flight: int | None = None
    ) -> Iterator[tuple[Config, Evaluation]]:
        """Submit the configs (at most `in_flight` at once, the next one pulled from `configs` as
        one finishes; all at once by default); yield each evaluation as it finishes (timed, if
        latency is measured, on a measuring node after it was built). A task lost with its
        worker is retried by Ray; one that fails for good is an evaluation with an error."""
        if isinstance(configs, Sequence) and not configs:
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
        feed = iter(configs)
        while True:
            # Refilled after each yield: a lazy feed then asks its search with every result told.
            while in_flight is None or len(pending) < in_flight:
                config = next(feed, None)
                if config is None:
                    break
                evaluation_ref, artifact_ref = build_task.options(num_cpus=1, max_retries=MAX_RETRIES).remote(
                    refs, evaluator.options, dict(config), measured, share, evaluator.early
                )
                pending[evaluation_ref] = (config, None, artifact_ref)
            if not pending:
                return
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            config, built, artifact_ref = pending.pop(ready)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayError as e:
                stage = "building or scoring" if built is None else "timing"
                yield config, replace(built or Evaluation(), error=f"{stage} failed on the cluster: {_cause(e)}")
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
                timing = time_task.options(num_cpus=self._measure_cpus, resources={self._resource: 1}, max_retries=MAX_RETRIES).remote(
                    refs, artifact_ref
                )
                pending[timing] = (config, evaluation, None)
            else:  # timed
                paired, seconds = result
                latency = evaluator.record_timing(built.digest, paired)
                yield config, replace(built, metrics={**built.metrics, **latency}, seconds=built.seconds + seconds)

    def time(
        self,
        evaluator: ModelEvaluator,
        reference: Artifact,
        artifacts: Mapping[int, Artifact],
        *,
        final: bool = True,
        progress: Callable[[str], None] | None = None,
        time_limit: float | None = None,
    ) -> Iterator[tuple[int, PairedRatio]]:
        """Timing on the measuring node, so the driver need not run on the target: each artifact
        travels as `evaluate`'s do, and FP32 is the measuring node's own lowering of the job's
        model (what `reference` is on the driver). `final`: the whole front in rotation in a
        process started for it there, as on one machine (`progress` is told when it starts, the
        ratios come when it ends); else one model at a time for the search's rounds, each yielded
        as it is done.

        Raises:
            SimqError: No measuring node was found (`fingerprint`), or a timing failed for good.
        """
        if not artifacts:
            return
        self.connect()
        if self._resource is None:
            raise SimqError("measured latency needs the cluster's measuring node: call fingerprint(target) first.")
        refs = self._job(evaluator.job)
        where = {"num_cpus": self._measure_cpus, "resources": {self._resource: 1}, "max_retries": MAX_RETRIES}
        if final:
            keys = list(artifacts)
            if progress is not None:
                progress(f"timing {len(keys)} models in rotation on the measuring node")
            front = front_task.options(**where).remote(refs, [pack(artifacts[k], artifacts[k].digest(), self.share) for k in keys], time_limit)
            try:
                ratios = ray.get(front)
            except ray.exceptions.RayError as e:
                raise SimqError(f"the final pass's timing failed on the cluster: {_cause(e)}") from None
            yield from zip(keys, ratios)
            return
        timing = time_task.options(**where)
        pending = {timing.remote(refs, pack(a, a.digest(), self.share)): i for i, a in artifacts.items()}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready)
            try:
                paired, _seconds = ray.get(ready)
            except ray.exceptions.RayError as e:
                raise SimqError(f"the timing of #{i} failed on the cluster: {_cause(e)}") from None
            yield i, paired

    def _job(self, job: Any) -> list[ray.ObjectRef]:
        """The job in the object store, put once (wrapped in a list, so that tasks receive the
        reference and each worker deserializes the job once, not once per task)."""
        if self._job_key != id(job):
            self._job_refs, self._job_key = [ray.put(dumps(job))], id(job)
        return self._job_refs
