"""Why does a re-timed ratio move by up to 10 % (docs/RETIME.md)? Separates what a latency ratio
owes to the session instance (where ONNX Runtime placed its weights and buffers) from what it owes
to the process and the time it was taken at, and measures whether timing each model against FP32
over several fresh session pairs makes fresh processes agree. Writes docs/INSTANCES.md.

The parent builds the models once (minilm-tweets: the recipe, SimQ INT8 unpruned and at three
pruning levels, all as `simq compile` lowers them) and saves them. Each of `--processes` fresh
processes then, `--instances` times over, opens a fresh FP32 session and a fresh session of every
model and times each pair with the adaptive protocol (`simq.targets.timed_ratio` on one pair,
every session with the ort-cpu target's timing settings); the instances of a model are spread over the process's
run (instance k of every model before instance k+1 of any), so instance and time are not one.
Last, it times every model with its rounds pooled over `--instances` fresh session pairs
(`timed_ratio` on lists of sessions), the FP32 sessions held for all models, as a final pass
could.

Usage: python tools/bench_instances.py [--processes 3] [--instances 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import artifact_from, artifact_record, cpu_name, table, timing_text, tolerance_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BAR = "ORT optimizer + dynamic INT8"
#: label -> (heads = FFN width, layers dropped), every unit int8dyn.
GRID = {"SimQ INT8, unpruned": (1.0, 0), "SimQ INT8, heads = FFN 75 %": (0.75, 0),
        "SimQ INT8, heads = FFN 50 %": (0.5, 0), "SimQ INT8, 4 of 6 layers": (1.0, 2)}  # fmt: skip


def build(work: Path) -> list[str]:
    """Lower FP32, the recipe and the grid into WORK/<n>/, indexed in WORK/artifacts.json (absolute paths:
    the recipe stays in its baseline cache); their labels, FP32 first."""
    import numpy as np
    from bench_lowering import Case
    from bench_tune import grid_config

    from simq.search import JobSpec, prepare_job
    from simq.zoo import Zoo

    job = prepare_job(JobSpec(model="zoo:minilm-tweets"), Zoo()).job
    case = Case("minilm-tweets", job.target, job.model, job.structure, job.pipeline, [], job.feed, None, None)
    makers = {"FP32": lambda folder: job.target.lower(job.model, folder), f"the recipe ({BAR})": job.baselines[BAR]}
    for label, (width, drops) in GRID.items():
        makers[label] = lambda folder, c=grid_config(case, width, drops): job.target.lower(job.pipeline.build(c), folder)
    index = []
    for n, (label, make) in enumerate(makers.items()):
        print(f"building {label}", file=sys.stderr, flush=True)
        folder = work / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        a = make(folder)
        index.append(artifact_record(a))
    (work / "artifacts.json").write_text(json.dumps(index, indent=1))
    np.savez(work / "feed.npz", **job.feed)
    return list(makers)


def child(work: Path, instances: int) -> dict[str, list]:
    """In this fresh process: ratios[model][instance] against FP32, each from fresh sessions, and
    each model's ratio with its rounds pooled over as many pairs."""
    import numpy as np

    from simq.targets import TargetRegistry, timed_ratio

    target = TargetRegistry().get("ort-cpu", threads=2)
    feed = dict(np.load(work / "feed.npz"))
    index = json.loads((work / "artifacts.json").read_text())
    artifacts = [artifact_from(a) for a in index]
    ratios: list[list[float]] = [[] for _ in artifacts[1:]]
    for _ in range(instances):
        for m, artifact in enumerate(artifacts[1:]):
            reference, candidate = target.runner(artifacts[0], feed), target.runner(artifact, feed)
            ratios[m].append(timed_ratio(reference, candidate).ratio)
            del reference, candidate
    # Pooled: `instances` FP32 sessions for all models, as many fresh sessions of each model, the
    # rounds pooled over the pairs.
    references = [target.runner(artifacts[0], feed) for _ in range(instances)]
    pooled = [timed_ratio(references, [target.runner(a, feed) for _ in references]).ratio for a in artifacts[1:]]
    return {"instances": ratios, "pooled": pooled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3, help="fresh processes (default 3)")
    parser.add_argument("--instances", type=int, default=3, help="fresh session pairs per model and process (default 3)")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "instances")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.work, args.instances)))
        return
    labels = build(args.work)
    runs = []  # runs[process]: {"instances": [model][instance], "pooled": [model]}
    for p in range(args.processes):
        print(f"process {p + 1} of {args.processes}", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--work", str(args.work), "--instances", str(args.instances), "--child"]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(render(labels[1:], runs, args), end="")


def _disagreement(values: list[float]) -> float:
    """How far apart the largest and smallest of `values` are: max / min − 1."""
    return max(values) / min(values) - 1


def render(labels: list[str], runs: list[dict[str, list]], args: argparse.Namespace) -> str:
    rows, within, between, first_worst, median_worst, pooled_worst = [], [], [], 0.0, 0.0, 0.0
    for m, label in enumerate(labels):
        per_process = [run["instances"][m] for run in runs]
        grand = statistics.median(r for process in per_process for r in process)
        # Spread between the instances of one process, and between the processes' medians.
        within.append(statistics.mean(_disagreement(v) for v in per_process))
        between.append(_disagreement([statistics.median(v) for v in per_process]))
        first = _disagreement([v[0] for v in per_process])
        pooled = [run["pooled"][m] for run in runs]
        first_worst, median_worst = max(first_worst, first), max(median_worst, between[-1])
        pooled_worst = max(pooled_worst, _disagreement(pooled))
        cells = [" ".join(f"{r:.3f}" for r in v) + f" → **{statistics.median(v):.3f}**" for v in per_process]
        rows.append([label, f"{grand:.3f}", *cells, f"{within[-1]:.1%}", f"{first:.1%}", f"{between[-1]:.1%}",
                     " ".join(f"{r:.3f}" for r in pooled) + f" ({_disagreement(pooled):.1%})"])  # fmt: skip
    headers = ["model × FP32", "median of all", *(f"process {p + 1}: instances → median" for p in range(len(runs))),
               "instances of one process: max/min − 1 (mean)", "first instance only: processes max/min − 1",
               "instance medians: processes max/min − 1", "rounds pooled over the pairs, each process (max/min − 1)"]  # fmt: skip
    doc = f"""# Where a re-timed ratio moves: session instance, process, time

Generated by `python tools/bench_instances.py --processes {args.processes} --instances {args.instances}` on {cpu_name()}, 2 threads,
batch 1, 64 tokens (minilm-tweets, every SimQ model lowered as `simq compile` lowers it).

Each fresh process opens, {args.instances} times over, a fresh FP32 session and a fresh session of
every model and times each pair with the final pass's adaptive protocol (paired rounds until the
95 % interval of the ratio is within {tolerance_text()}), {timing_text()} in every session.
Instance k of every model is timed before instance k+1 of any, so the instances of a model are spread
over the process's run.

{table(headers, rows)}

- Between the instances of one process (mean over models and processes): {statistics.mean(within):.1%};
  between processes' instance medians: {statistics.mean(between):.1%} on average.
- Largest disagreement between processes, timing one session pair per model (what the final pass
  does): {first_worst:.1%}; timing {args.instances} pairs and taking their median: {median_worst:.1%}; timing
  {args.instances} pairs with their rounds pooled (`timed_ratio` on lists of sessions, the FP32
  sessions shared by all models): {pooled_worst:.1%}.
"""
    (ROOT / "docs" / "INSTANCES.md").write_text(doc)
    return doc


if __name__ == "__main__":
    main()
