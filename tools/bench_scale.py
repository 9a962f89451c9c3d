"""Scale-out: the search phase of `simq compile` in this process and on a local Ray cluster of 1
and 2 workers; the driver's own steps; from them, an estimate for 16 and 64 nodes. Writes
docs/SCALE.md.

1. One job (minilm-tweets, ort-cpu, one thread per evaluation, predicted latency from one cost
   model trained first, so every run asks the same candidates) compiled three ways with the same
   seed and budget: in this process, `RayExecutor(num_cpus=1)`, `RayExecutor(num_cpus=2)`.
   Search-phase wall time (first to last candidate committed), the driver's steps (ask: LINAS's
   catboost refit and inner NSGA-II; tell; commit; waiting for evaluations), and the candidates'
   own evaluation times.
2. The driver's steps at cluster scale, measured directly: one LINAS ask after N validated
   candidates (N up to 1,600), and a store commit into a store of 2,000 records.

Usage: python tools/bench_scale.py [--model zoo:minilm-tweets] [--budget N] [--population N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402

from simq.cluster import RayExecutor  # noqa: E402
from simq.search import (  # noqa: E402
    ALGORITHMS,
    CompileOptions,
    Goal,
    JobSpec,
    SearchSpace,
    Store,
    compile_model,
    prepare_job,
)
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class SearchClock:
    """A progress callback that notes when the search's first and last candidates were committed."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None

    def __call__(self, phase: str, done: int, total: int, detail=None) -> None:
        if phase == "search":
            now = time.perf_counter()
            if done == 0:
                self.first = now
            self.last = now


def compile_once(job, options: CompileOptions, out: Path, executor) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    clock = SearchClock()
    result = compile_model(job, options, out, progress=clock, executor=executor)
    if executor is not None:
        executor.close()
    store = Store(out / Store.FILENAME)
    try:
        candidates = [r for r in store.records("candidate")]
    finally:
        store.close()
    return {
        "search_s": clock.last - clock.first,
        "setup_s": clock.first - clock.start,
        "steps": result.driver_steps,
        "configs": sorted(json.dumps(r.config, sort_keys=True) for r in candidates),
        "evaluation_s": [r.seconds for r in candidates],
        "workers": sorted({r.worker for r in candidates if r.worker}),
        "failed": sum(r.status != "ok" for r in candidates),
    }


def ask_seconds(job, options: CompileOptions, validated: int, batch: int) -> float:
    """One LINAS ask after `validated` candidates (random configs with random metrics)."""
    space = SearchSpace(job.pipeline)
    goal = Goal(("accuracy", "latency", "size"), (0, 1, 2), {0: 1.0})
    algorithm = ALGORITHMS["linas"](space, goal, batch, 0)
    rng = np.random.default_rng(0)
    algorithm.ask()  # the initial batch
    x = np.asarray(space.sample(rng, validated))
    algorithm.tell(x, rng.random((validated, 3)))
    start = time.perf_counter()
    algorithm.ask()
    return time.perf_counter() - start


def commit_seconds(records: int) -> float:
    """Median seconds of one commit into a store that already holds up to `records` records."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / Store.FILENAME)
        times = []
        for i in range(records):
            start = time.perf_counter()
            store.add({"knob": i}, kind="candidate", metrics={"accuracy": 0.5, "latency_ms": 1.0, "size_bytes": 1e6}, fingerprint="f", seconds=1.0)
            times.append(time.perf_counter() - start)
        store.close()
    return statistics.median(times[len(times) // 2 :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo:minilm-tweets")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "scale")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "SCALE.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("preparing, with a cost model", file=sys.stderr, flush=True)
    # Every run predicts with the same cost model: the same candidates.
    job = prepare_job(JobSpec(model=args.model, threads=1, cost_model=args.work / "costmodel", cost_model_samples=12), Zoo()).job
    options = CompileOptions(budget=args.budget, population=args.population, latency="predicted", seed=0, final_models=1)
    runs = {}
    for label, slug, make in (
        ("this process (1 thread)", "inprocess", lambda: None),
        ("Ray, 1 worker", "ray1", lambda: RayExecutor(num_cpus=1, measured=False)),
        ("Ray, 2 workers", "ray2", lambda: RayExecutor(num_cpus=2, measured=False)),
    ):
        print(f"compiling: {label}", file=sys.stderr, flush=True)
        runs[label] = compile_once(job, options, args.work / slug, make())
    base = runs["this process (1 thread)"]
    rows = []
    for label, r in runs.items():
        steps = r["steps"]
        rows.append([
            label, f"{r['search_s'] / 60:.2f}", f"{base['search_s'] / r['search_s']:.2f}x", f"{r['setup_s']:.1f}",
            f"{steps['ask'][1]:.1f} ({steps['ask'][0]})", f"{steps['commit'][1] * 1000 / max(steps['commit'][0], 1):.1f}",
            f"{steps['wait'][1]:.1f}", f"{statistics.median(r['evaluation_s']):.1f}", len(r["workers"]) or "-",
            "yes" if r["configs"] == base["configs"] else "**no**", r["failed"],
        ])  # fmt: skip
    print("timing the driver's steps at scale", file=sys.stderr, flush=True)
    sizes = (20, 100, 400, 1600)
    asks = {n: ask_seconds(job, options, n, 64) for n in sizes}
    commit_ms = commit_seconds(2000) * 1000
    two = runs["Ray, 2 workers"]
    evaluation = statistics.median(two["evaluation_s"])
    longest = max(two["evaluation_s"])
    estimate_rows = []
    for nodes in (16, 64):
        for n in (100, 400, 1600):
            ask = asks[n]
            generation = ask + longest + nodes * commit_ms / 1000  # synchronous: ask, the batch's slowest, its commits
            per_candidate = generation / nodes
            estimate_rows.append([
                nodes, n, f"{ask:.1f}", f"{generation:.1f}", f"{per_candidate:.2f}", f"{evaluation / per_candidate:.1f}x",
                f"{ask / generation:.0%}",
            ])  # fmt: skip
    fingerprint = f"{cpu_name()}, 2 cores"
    doc = f"""# Scale-out on Ray

Written by `python tools/bench_scale.py --model {args.model} --budget {args.budget} --population {args.population}`
on {fingerprint}.

## The search phase on 1 and 2 local workers

`{args.model}` on ort-cpu, one thread per evaluation (`--threads 1`), latency **predicted** by one
cost model trained first, so every run asks the same candidates; LINAS, population
{args.population}, seed 0, budget {args.budget}. Search phase: from the first ask to the last
candidate committed (the Ray cluster's start and the final pass excluded). Each candidate is
built (pruned, quantized, fused, lowered) and scored on the validation split where it runs.

{table(["executor", "search min", "speed-up", "setup s", "ask s (calls)", "commit ms", "wait s", "evaluation s (median)", "worker processes", "same candidates", "failed"], rows)}

- *ask*: LINAS's catboost refit on every validated candidate and its inner NSGA-II on the
  predictors; *commit*: one store commit, per candidate; *wait*: the driver waiting for
  evaluations (in this process: running them); *setup*: compile_model's start to the first
  ask (the reference and baselines; with Ray, joining or starting the cluster).
- Two workers on a 2-core machine share it with the driver, whose asks run between
  generations (synchronous batches: a generation waits for its slowest candidate).

## The driver at scale

Measured here: one LINAS ask (batch 64) after N validated candidates, and one commit into a
store of 2,000 records:

{table(["validated candidates N", "ask s"], [[n, f"{asks[n]:.2f}"] for n in sizes])}

Store commit: {commit_ms:.2f} ms.

## Worked estimate for 16 and 64 nodes

Each node evaluates one candidate at a time; a generation is one ask, then the batch (one
candidate per node), which lasts as long as its slowest candidate ({longest:.1f} s here; median
{evaluation:.1f} s), then its commits. Throughput per candidate is the generation's length over
the nodes; the speed-up is against one process evaluating the median candidate back to back.

{table(["nodes", "validated N", "ask s", "generation s", "s per candidate", "speed-up", "driver's share"], estimate_rows)}

What limits it: the generation barrier, not the driver. The driver's share of a generation is
{min(r[-1] for r in estimate_rows)}-{max(r[-1] for r in estimate_rows)} here (an ask costs {min(asks.values()):.1f}-{max(asks.values()):.1f} s whether
20 or 1,600 candidates are validated: the inner NSGA-II on the predictors, a fixed 60
generations of 100, outweighs catboost's refit; commits take about a millisecond). A generation
lasts as long as its slowest candidate, {longest / evaluation:.1f}x the median here, so nodes idle
for about {1 - evaluation / longest:.0%} of it. The driver would become the bottleneck only once an
evaluation took about as long as an ask, i.e. with models far smaller than minilm-tweets or
hundreds of nodes per generation.

What would move it:
- asking asynchronously: a steady-state NSGA-II that hands a new candidate to each node as it
  frees up, the next ask computed on the current predictors while the batch runs (no
  generation barrier: the slowest candidate no longer holds up the others);
- then the ask itself: fewer inner generations, or the inner NSGA-II on a worker;
- on this 2-core machine, two workers beside the driver slow each evaluation from
  {statistics.median(runs['Ray, 1 worker']['evaluation_s']):.1f} s to {evaluation:.1f} s (shared cores and memory
  bandwidth), which is why 2 workers give {base['search_s'] / two['search_s']:.2f}x, not 2x; separate nodes do not share
  that.
"""
    args.out.write_text(doc)
    (args.work / "runs.json").write_text(json.dumps(runs, indent=1, default=str))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
