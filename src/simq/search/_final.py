"""The final pass: what a user could pick, re-timed and re-scored, written to ``pareto/``.

Only the feasible front is published (at most `CompileOptions.final_models`, chosen to span it by
hypervolume contribution; slower than FP32 only with ``keep_slower``), plus FP32 and the
baselines. The models are timed against FP32 in rotation, in a process started for it, until
the 95 % interval of every ratio (over per-round ratios) is within ±`TOLERANCE`, between
`MIN_ROUNDS` and `MAX_ROUNDS` rounds, or the final pass's time limit is spent; each is scored on the final split once per artifact
(cached by digest in the store).
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from simq.search._algorithms import Goal
from simq.search._evaluate import Executor, ModelEvaluator
from simq.search._objectives import Objective, References, tracked_values
from simq.search._pareto import hypervolume, pareto_front
from simq.search._store import Record
from simq.targets import MAX_ROUNDS, MIN_ROUNDS, TOLERANCE, Artifact, lowering_summary

__all__ = ["publish", "select_front"]


def select_front(
    records: Sequence[Record], references: References, goal: Goal, table: Mapping[str, Objective], limit: int, keep_slower: bool
) -> list[Record]:
    """The feasible Pareto set among `records` on the search's values (limits checked against
    their limited values: accuracy's paired upper bound), without models slower than FP32
    (unless `keep_slower`), at most `limit` of them: first each objective's best (the fastest
    first: the model a summary's headline names), then greedily by hypervolume contribution.

    The extremes go first because hypervolume undervalues them: the fastest model within the
    limit is also the least accurate of the front, and its exclusive share of the volume is thin.
    On a tuned minilm-tweets run, contribution alone published 8 of 16 models without the
    fastest (0.173x FP32, +0.29 points on validation) or the most accurate."""
    if not len(records):
        return []
    values = _values(records, references, goal, table)
    feasible = np.all(goal.constraint_values(values) <= 0, axis=1) & np.all(np.isfinite(values), axis=1)
    if not keep_slower and "latency" in table:
        feasible &= np.array([(table["latency"].value(r, references) or 0.0) <= 1.0 + 1e-9 for r in records])
    front = [records[i] for i in pareto_front(goal.objective_values(values), feasible)]
    if len(front) <= limit:
        return front
    points = goal.objective_values(_values(front, references, goal, table))
    bound = points.max(axis=0) + 1e-6 + 0.01 * np.abs(points.max(axis=0))
    chosen = _extremes(points, [goal.metrics[i] for i in goal.objectives])[:limit]
    while len(chosen) < limit:
        base = hypervolume(points[chosen], bound) if chosen else 0.0
        gains = [(hypervolume(points[chosen + [i]], bound) - base, -i) for i in range(len(front)) if i not in chosen]
        chosen.append(-max(gains)[1])
    return [front[i] for i in sorted(chosen)]


def _extremes(points: np.ndarray, names: Sequence[str]) -> list[int]:
    """Each objective's best row of `points` (minimisation form; ties to the better on the
    others), latency's first, without repeats."""
    order = sorted(range(len(names)), key=lambda j: names[j] != "latency")
    best = []
    for j in order:
        others = [points[:, k] for k in reversed(range(len(names))) if k != j]
        row = int(np.lexsort([*others, points[:, j]])[0])
        if row not in best:
            best.append(row)
    return best


def _values(records: Sequence[Record], references: References, goal: Goal, table: Mapping[str, Objective]) -> np.ndarray:
    rows = [tracked_values(table, goal.metrics, r, references) for r in records]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def publish(
    evaluator: ModelEvaluator,
    executor: Executor,
    out: Path,
    front: list[Record],
    reference: Record,
    baselines: list[Record],
    progress: Callable[..., None],
) -> dict[int, dict[str, float]]:
    """Lower the front into ``out/pareto/``, time it with the baselines against FP32 through
    `executor` (where latencies are measured), score them (with `evaluator`'s job, options,
    scratch folder and store), write the manifests; returns the end-of-run values by record id
    (also stored)."""
    job, options, store, work = evaluator.job, evaluator.options, evaluator.store, evaluator.work
    staging = out / "pareto.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    summaries: dict[int, dict] = {}

    def shipped(record_id: int, config: Mapping[str, Hashable]) -> Callable[[Path], Artifact]:
        def build(folder: Path) -> Artifact:
            model = job.pipeline.build(config)
            summaries[record_id] = lowering_summary(model)
            return job.target.lower(model, folder)

        return build

    builders: dict[int, Callable[[Path], Artifact]] = {reference.id: evaluator.reference_artifact}
    builders.update({r.id: shipped(r.id, r.config) for r in front if r.id != reference.id})
    builders.update({r.id: job.baselines[r.config["baseline"]] for r in baselines})
    published = {r.id for r in front}
    timed = options.latency == "measured"
    steps = len(builders) * (1 + (job.final_evaluator is not None)) + (len(builders) - 1 if timed else 0)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        progress("final", done, steps, what)

    artifacts: dict[int, Artifact] = {}
    for record_id, build in builders.items():
        folder = staging / str(record_id) if record_id in published else work / f"final-{record_id}"
        folder.mkdir(parents=True, exist_ok=True)
        artifacts[record_id] = build(folder)
        step(f"lowered #{record_id}")
    final: dict[int, dict[str, float]] = {i: {} for i in artifacts}
    if timed:
        # Only the reference left: timed against itself, for its milliseconds.
        others = {i: a for i, a in artifacts.items() if i != reference.id} or {reference.id: artifacts[reference.id]}
        reference_ms: list[float] = []
        def told(detail: str) -> None:
            progress("final", done, steps, detail)

        for i, paired in executor.time(evaluator, artifacts[reference.id], others, progress=told, time_limit=options.final_time_limit):
            reference_ms.append(paired.reference_ms)
            if i != reference.id:
                final[i] |= {**paired.metrics(), "rounds": float(paired.rounds)}
                step(f"timed #{i} ({paired.rounds} rounds, {paired.ratio:.3f}x FP32 [{paired.low:.3f}, {paired.high:.3f}])")
        ms = statistics.median(reference_ms)
        final[reference.id] |= {"latency_ratio": 1.0, "latency_ratio_low": 1.0, "latency_ratio_high": 1.0, "latency_ms": ms}
        for i in artifacts:
            final[i]["latency_ms"] = final[i]["latency_ratio"] * ms
    if job.final_evaluator is not None:
        for i, artifact in artifacts.items():
            digest = artifact.digest()
            score = store.score(digest, job.final_evaluator.name)
            if score is None:
                scored = job.final_evaluator.score(job.target.load(artifact, deployment=True), artifact)  # timed already: spinning is fine
                score = scored.value
                store.add_score(digest, job.final_evaluator.name, score, scored.per_example)
            final[i]["accuracy"] = score
            step(f"scored #{i}")
    timing = {
        "settings": job.target.timing_settings(), "inputs": {name: list(v.shape) for name, v in job.feed.items()},
        "protocol": "paired rounds against FP32 in one process started for the timing, each session alone on the cores while timed, "
        "the models in rotation until every interval is within its tolerance or the time limit is spent after the minimum "
        "rounds (on a cluster, the same on its measuring node); "
        "latency_ratio is the median per-round ratio, latency_ratio_low/high its 95 % interval",
        "tolerance": TOLERANCE, "min_rounds": MIN_ROUNDS, "max_rounds": MAX_ROUNDS, "time_limit_s": options.final_time_limit,
    }  # fmt: skip
    for record in front:
        folder = staging / str(record.id)
        for name, path in job.extra_files.items():
            shutil.copy2(path, folder / name)
        manifest = {
            "id": record.id, "kind": record.kind, "model": job.name, "target": job.target.name,
            "fingerprint": asdict(job.target.fingerprint()), "config": record.config, "metrics": record.metrics,
            "final": final[record.id], "reference": {"metrics": reference.metrics, "final": final[reference.id]},
            "model_hash": artifacts[record.id].digest(),
            "files": [str(f.relative_to(folder)) for f in artifacts[record.id].files],
            "runtime_settings": dict(artifacts[record.id].settings),
            "timing": timing,
            "inputs": {name: list(shape) for name, shape in job.structure.signature.items()},
            "data": job.data, "lowering": summaries.get(record.id, lowering_summary(job.model)),
        }  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        artifacts[record.id].save_index(folder)
    pareto, old = out / "pareto", out / "pareto.old"
    if pareto.exists():
        pareto.rename(old)
    staging.rename(pareto)
    shutil.rmtree(old, ignore_errors=True)
    for i, metrics in final.items():
        store.set_final(i, str(pareto / str(i)) if i in published else None, metrics)
    return final

