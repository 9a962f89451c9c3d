"""The final pass: what a user could pick, re-timed and re-scored, written to ``pareto/``.

Only the feasible front is published (at most `CompileOptions.final_models`, chosen to span it by
hypervolume contribution; slower than FP32 only with ``keep_slower``), plus FP32 and the
baselines. Its latencies are the search's labels until the final pass re-times them: the
contenders (`contenders`: the front chosen on the labels, and the feasible models whose label is
within `CONFIRM_MARGIN` of that front) are timed against FP32 in rotation with the baselines, in a
process started for it, until the 95 % interval of every ratio (over per-round ratios) is within
±`TOLERANCE`, between `MIN_ROUNDS` and `MAX_ROUNDS` rounds, or the final pass's time limit is
spent; the published front is then chosen among them on those timings, and each of its models is
scored on the final split once per artifact (cached by digest in the store).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np

from simq.search._algorithms import Goal
from simq.search._evaluate import Executor, ModelEvaluator
from simq.search._objectives import LIMITED, Objective, References, tracked_values
from simq.search._pareto import hypervolume, pareto_front
from simq.search._store import Record
from simq.targets import MAX_ROUNDS, MIN_ROUNDS, TOLERANCE, Artifact, lowering_summary

__all__ = ["CONFIRM_MARGIN", "CONTENDERS_PER_MODEL", "contenders", "publish", "select_front"]

#: How far below its label a model's latency may turn out: a feasible model whose search label,
#: this fraction lower, would put it on the front is re-timed in the final pass before the
#: published front is chosen. Search labels come from `simq.targets.ROUNDS` rounds, and the
#: front is made of the luckiest of them: over the stored runs, labels read 0.81 to 1.08 of the
#: final pass's ratio of the same model. On the AMX Xeon's openvino-cpu run of docs/RESULTS.md,
#: the label of #13 (0.328x FP32) put its twin #14 (0.357x) off the front; re-timed in the same
#: rotations, #14 ran 10-14 % faster than #13 (docs/CONFIRM.md).
CONFIRM_MARGIN = 0.15
#: At most this many contenders per published model (`CompileOptions.final_models`) are
#: re-timed: each one adds its turn to every rotation of the final pass's timing.
CONTENDERS_PER_MODEL = 3


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
    feasible = _feasible(records, values, references, goal, table, keep_slower)
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


def contenders(
    records: Sequence[Record], references: References, goal: Goal, table: Mapping[str, Objective], limit: int, keep_slower: bool,
    margin: float = CONFIRM_MARGIN,
) -> list[Record]:
    """What the final pass times before the published front is chosen: the front `select_front`
    chooses on the search's labels and FP32, then the feasible models that would join the label front if
    their latency label were `margin` lower (the latency limit and the FP32 cut loosened alike),
    the closest first, up to `CONTENDERS_PER_MODEL` × `limit` models besides FP32. Without latency
    among the objectives, the front alone.

    A model's distance is its latency gap: ``1 - fastest / its own`` over the feasible models at
    least as good as it on every other objective (itself included, so the front's is 0)."""
    front = select_front(records, references, goal, table, limit, keep_slower)
    chosen = {r.id for r in front}
    # FP32 is timed anyway (the unit): what is published if every other model turns out slower.
    front += [r for r in records if r.kind == "reference" and r.id not in chosen]
    if "latency" not in [goal.metrics[i] for i in goal.objectives]:
        return front
    values = _values(records, references, goal, table)
    loosened = values.copy()
    loosened[:, [j for j, name in enumerate(goal.metrics) if name in ("latency", "latency" + LIMITED)]] *= 1.0 - margin
    rows = np.flatnonzero(_feasible(records, loosened, references, goal, table, keep_slower, 1.0 - margin))
    points = goal.objective_values(values)
    latency = [goal.metrics[i] for i in goal.objectives].index("latency")
    others = [k for k in range(points.shape[1]) if k != latency]
    gaps = []
    for i in rows:
        ahead = rows[np.all(points[rows][:, others] <= points[i, others], axis=1)]
        gaps.append((1.0 - points[ahead, latency].min() / points[i, latency], int(i)))
    near = [records[i] for gap, i in sorted(gaps) if gap <= margin and records[i].id not in chosen and records[i].kind != "reference"]
    timed = sum(r.kind != "reference" for r in front)  # FP32 is the unit: never re-timed
    return front + near[: max(0, CONTENDERS_PER_MODEL * limit - timed)]


def _feasible(
    records: Sequence[Record], values: np.ndarray, references: References, goal: Goal, table: Mapping[str, Objective],
    keep_slower: bool, latency_scale: float = 1.0,
) -> np.ndarray:
    """Which `records` (with tracked `values`) are within the goal's limits, have every value,
    and (unless `keep_slower`) are no slower than FP32 once their latency is scaled by `latency_scale`."""
    feasible = np.all(goal.constraint_values(values) <= 0, axis=1) & np.all(np.isfinite(values), axis=1)
    if not keep_slower and "latency" in table:
        feasible &= np.array([(table["latency"].value(r, references) or 0.0) * latency_scale <= 1.0 + 1e-9 for r in records])
    return feasible


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
    pool: list[Record],
    choose: Callable[[list[Record]], list[Record]],
    reference: Record,
    baselines: list[Record],
    progress: Callable[..., None],
) -> list[Record]:
    """Lower the `pool` (the `contenders`), time it with the baselines against FP32 through
    `executor` (where latencies are measured), choose the published front among it with `choose`
    (given the pool with those timings as its latency labels), score the front, FP32 and the
    baselines (with `evaluator`'s job, options, scratch folder and store), and write the front's
    folders and manifests into ``out/pareto/``. Returns the front (as searched); the end-of-run
    values of every model timed or scored are stored (an artifact's path only for the front)."""
    job, options, store, work = evaluator.job, evaluator.options, evaluator.store, evaluator.work
    summaries: dict[int, dict] = {}

    def shipped(record_id: int, config: Mapping[str, Hashable]) -> Callable[[Path], Artifact]:
        def build(folder: Path) -> Artifact:
            model = job.pipeline.build(config)
            summaries[record_id] = lowering_summary(model)
            return job.target.lower(model, folder)

        return build

    builders: dict[int, Callable[[Path], Artifact]] = {reference.id: evaluator.reference_artifact}
    builders.update({r.id: shipped(r.id, r.config) for r in pool if r.id != reference.id})
    builders.update({r.id: job.baselines[r.config["baseline"]] for r in baselines})
    timed = options.latency == "measured"
    scored = job.final_evaluator is not None
    steps = len(builders) * (1 + scored) + (len(builders) - 1 if timed else 0)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        progress("final", done, steps, what)

    artifacts: dict[int, Artifact] = {}
    lowered = lambda record_id: work / f"final-{record_id}"  # noqa: E731
    for record_id, build in builders.items():
        shutil.rmtree(lowered(record_id), ignore_errors=True)
        lowered(record_id).mkdir(parents=True)
        artifacts[record_id] = build(lowered(record_id))
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
    as_searched = {r.id: r for r in pool}
    front = [as_searched[r.id] for r in choose([_timed(r, final[r.id]) for r in pool] if timed else pool)]
    published = {r.id for r in front}
    staging = out / "pareto.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    dropped = set(as_searched) - published - {reference.id}
    for i in published:
        artifacts[i] = _moved(artifacts[i], lowered(i), staging / str(i))
    for i in dropped:  # their timings are stored (no artifact): what the choice was made on
        shutil.rmtree(lowered(i), ignore_errors=True)
        del artifacts[i]
    steps -= len(dropped) * scored
    if dropped:
        progress("final", done, steps, f"published {len(front)} of the {len(pool)} models timed, chosen on these timings")
    if scored:
        for i, artifact in artifacts.items():
            digest = artifact.digest()
            score = store.score(digest, job.final_evaluator.name)
            if score is None:
                scored_now = job.final_evaluator.score(job.target.load(artifact, deployment=True), artifact)  # timed already: spinning is fine
                score = scored_now.value
                store.add_score(digest, job.final_evaluator.name, score, scored_now.per_example)
            final[i]["accuracy"] = score
            step(f"scored #{i}")
    timing = {
        "settings": job.target.timing_settings(), "inputs": {name: list(v.shape) for name, v in job.feed.items()},
        "protocol": "paired rounds against FP32 in one process started for the timing, each session alone on the cores while timed, "
        "the models in rotation until every interval is within its tolerance or the time limit is spent after the minimum "
        "rounds (on a cluster, the same on its measuring node); the published models chosen among those timed on these timings; "
        "latency_ratio is the median per-round ratio, latency_ratio_low/high its 95 % interval",
        "tolerance": TOLERANCE, "min_rounds": MIN_ROUNDS, "max_rounds": MAX_ROUNDS, "time_limit_s": options.final_time_limit,
    }  # fmt: skip
    for record in front:
        folder = staging / str(record.id)
        for name, path in job.extra_files.items():
            shutil.copy2(path, folder / name)
        manifest = {
            "id": record.id, "kind": record.kind, "model": job.name, "target": job.target.name,
            "fingerprint": dataclasses.asdict(job.target.fingerprint()), "config": record.config, "metrics": record.metrics,
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
    return front


def _moved(artifact: Artifact, source: Path, folder: Path) -> Artifact:
    """`artifact`, lowered into `source`, after that folder is moved to `folder`."""
    artifact.save_index(source)
    shutil.move(source, folder)
    return Artifact.load_index(folder)


def _timed(record: Record, final: Mapping[str, float]) -> Record:
    """`record` with the final pass's timing as its latency label."""
    timing = {k: final[k] for k in ("latency_ratio", "latency_ratio_low", "latency_ratio_high", "latency_ms") if k in final}
    return dataclasses.replace(record, metrics={**record.metrics, **timing})

