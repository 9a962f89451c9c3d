"""LINAS vs NSGA-II vs random search: hypervolume against validated evaluations on minilm-tweets.

Runs `simq compile` (the public CLI) for each algorithm and seed on zoo:minilm-tweets, ort-cpu,
objectives accuracy (validation split), latency and size. Latency is predicted by one ort-cpu
cost model trained once at the start (on measured random sub-networks), so that every run sees
the same latency function and the comparison is between algorithms, not between measurement
noise. Hypervolume is computed after every validated candidate, over (accuracy drop in points,
latency / FP32, size / FP32) with reference point (5, 1, 1). Writes docs/SEARCH.md and a plot.

Usage: python tools/bench_search.py [--budget 45] [--seeds 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402

from simq.cli import main as simq  # noqa: E402
from simq.search import Store, hypervolume_curve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALGORITHMS = ("linas", "nsga2", "random")
OBJECTIVES = ("accuracy", "latency", "size")
console = Console(stderr=True)


def run(args: argparse.Namespace, algorithm: str, seed: int) -> tuple[list[float], float]:
    """Run (or, with --report-only, just read) one compile; its hypervolume curve and the
    seconds its candidates' evaluations took (from the store)."""
    out = args.work / f"{algorithm}-{seed}"
    if not args.report_only:
        compile_once(args, algorithm, seed, out)
    store = Store(out / Store.FILENAME)
    records = store.records()
    store.close()
    reference = next(r for r in records if r.kind == "reference")
    seconds = sum(r.seconds for r in records if r.kind == "candidate")
    return hypervolume_curve(records, reference, list(OBJECTIVES)), seconds


def compile_once(args: argparse.Namespace, algorithm: str, seed: int, out: Path) -> None:
    command = [
        "compile", "zoo:minilm-tweets", "--target", "ort-cpu", "--objectives", ",".join(OBJECTIVES),
        "--budget", str(args.budget), "--population", str(args.population), "--algorithm", algorithm, "--seed", str(seed),
        "--latency", "predicted", "--cost-model", str(args.work / "costmodel"), "--cost-model-samples", str(args.cost_model_samples),
        "--out", str(out), "--no-baselines",
    ]  # fmt: skip
    if args.cache_dir:
        command += ["--cache-dir", str(args.cache_dir)]
    if (out / Store.FILENAME).exists():
        command.append("--resume")  # finished evaluations are reused; a finished run only redoes its report
    if simq(command) != 0:
        raise SystemExit(f"simq compile failed for {algorithm} seed {seed}")


def evaluations_to_match(runs: list[list[float]], level: float) -> str:
    return ", ".join("never" if n is None else str(n) for n in (evaluations_to_reach(c, level) for c in runs))


def evaluations_to_reach(curve: list[float], level: float) -> int | None:
    for i, value in enumerate(curve):
        if value >= level:
            return i + 1
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"))
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "search")
    parser.add_argument("--budget", type=int, default=45)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cost-model-samples", type=int, default=40)
    parser.add_argument("--report-only", action="store_true", help="read the runs already in --work instead of running them")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "SEARCH.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[list[float]]] = {a: [] for a in ALGORITHMS}
    seconds: dict[str, list[float]] = {a: [] for a in ALGORITHMS}
    for seed in range(args.seeds):
        for algorithm in ALGORITHMS:
            console.print(f"[bold]{algorithm}, seed {seed}")
            curve, elapsed = run(args, algorithm, seed)
            curves[algorithm].append(curve)
            seconds[algorithm].append(elapsed)

    best = max(c[-1] for runs in curves.values() for c in runs)
    nsga2_final = float(np.mean([c[-1] for c in curves["nsga2"]]))
    level = 0.95 * best
    rows, reach = [], {}
    for algorithm, runs in curves.items():
        needed = [evaluations_to_reach(c, level) for c in runs]
        reach[algorithm] = needed
        at = lambda n: np.mean([c[min(n, len(c)) - 1] for c in runs]) / best  # noqa: E731
        rows.append([
            algorithm, ", ".join(f"{c[-1]:.4f}" for c in runs), f"{at(args.population):.1%}", f"{at(args.budget // 3):.1%}",
            f"{at(args.budget):.1%}", ", ".join("never" if n is None else str(n) for n in needed),
            f"{np.median(seconds[algorithm]) / 60:.1f}", evaluations_to_match(runs, nsga2_final),
        ])  # fmt: skip

    _plot(curves, best, args.work / "search.png")
    (ROOT / "docs" / "img").mkdir(exist_ok=True)
    (args.work / "search.png").replace(ROOT / "docs" / "img" / "search_hypervolume.png")

    def mean_reach(algorithm: str) -> float | None:
        values = [n for n in reach[algorithm] if n is not None]
        return float(np.mean(values)) if len(values) == len(reach[algorithm]) else None

    linas, nsga2 = mean_reach("linas"), mean_reach("nsga2")
    if linas is None:
        verdict = "LINAS did not reach 95 % of the best hypervolume in every seed: the goal is not met."
    elif nsga2 is None:
        verdict = (
            f"LINAS reached 95 % of the best hypervolume after {linas:.0f} validated evaluations on average; NSGA-II did "
            f"not reach it within {args.budget} in every seed, so it needs more than {args.budget} "
            f"({'goal met' if linas <= args.budget / 3 else 'goal not shown'}: a third would be {args.budget / 3:.0f} or fewer for LINAS)."
        )
    else:
        verdict = (
            f"LINAS reached 95 % of the best hypervolume after {linas:.0f} validated evaluations on average, NSGA-II after "
            f"{nsga2:.0f}: LINAS needed {linas / nsga2:.0%} of NSGA-II's evaluations ({'goal met' if linas <= nsga2 / 3 else 'goal not met'}: at most a third)."
        )
    match = [evaluations_to_reach(c, nsga2_final) for c in curves["linas"]]
    if all(n is not None for n in match):
        verdict += (
            f" Measured the other way round: NSGA-II's mean final hypervolume after {args.budget} evaluations "
            f"({nsga2_final:.4f}) is reached by LINAS after {', '.join(map(str, match))} evaluations "
            f"(at most a third of {args.budget} in {sum(n <= args.budget / 3 for n in match)} of {len(match)} seeds)."
        )
    doc = f"""# Search: LINAS vs NSGA-II vs random

Written by `python tools/bench_search.py --budget {args.budget} --seeds {args.seeds} --population {args.population} --cost-model-samples {args.cost_model_samples}`.
Machine: {cpu_name()}, {os.cpu_count()} cores.

Each run is `simq compile zoo:minilm-tweets --target ort-cpu --objectives accuracy,latency,size --budget {args.budget}
--population {args.population} --algorithm ALGO --seed SEED --latency predicted --cost-model DIR`. Accuracy is
measured on the validation split (512 tweets) for every validated candidate; size is the artifact's
bytes; latency is predicted by one ort-cpu cost model trained once, before the first run, on
{args.cost_model_samples} measured random sub-networks, and shared by every run, so that all algorithms
optimise the same functions and the comparison is not blurred by measurement noise (a measured run
differs only in where its latency numbers come from).

**Hypervolume** after each validated candidate, of the candidates so far, over (accuracy drop in
points, latency / FP32, size / FP32), reference point **(5, 1, 1)**: a candidate counts only if it
is faster and smaller than FP32 and loses less than 5 points. "Best" is the largest final
hypervolume of any run ({best:.4f}); the target level is 95 % of it ({level:.4f}). Evaluation time
is the sum of the candidates' build + lower + score + predict times recorded in each run's store.

{table(["algorithm", "final HV per seed", f"mean HV after {args.population} (% of best)", f"after {args.budget // 3}", f"after {args.budget}", "evaluations to 95 % of best, per seed", "median evaluation time min", "evaluations to NSGA-II's mean final HV, per seed"], rows)}

{verdict}

![hypervolume against validated evaluations](img/search_hypervolume.png)

Mean final hypervolume: LINAS {np.mean([c[-1] for c in curves["linas"]]):.3f}, NSGA-II {nsga2_final:.3f}, random
{np.mean([c[-1] for c in curves["random"]]):.3f}. For a given seed LINAS and NSGA-II validate the same first
population (the same seeded graded sampler), so they part only where the predictors take over.

LINAS (`--algorithm linas`, the default): the first population is random (graded from light to
heavy compression); then, per generation, one catboost regressor per metric is trained on every
validated candidate, NSGA-II runs 60 generations of 100 on those predictors, and the best new
candidates of the predicted front are validated. NSGA-II (`nsga2`) validates every candidate it
generates; `random` validates graded random samples.
"""
    args.out.write_text(doc)
    console.print(f"wrote {args.out}")


def _plot(curves: dict[str, list[list[float]]], best: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (algorithm, runs), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:gray")):
        for i, curve in enumerate(runs):
            ax.plot(range(1, len(curve) + 1), np.array(curve) / best, c=colour, alpha=0.8, label=algorithm if i == 0 else None)
    ax.axhline(0.95, ls="--", c="k", lw=0.8, label="95 % of best")
    ax.set_xlabel("validated evaluations")
    ax.set_ylabel("hypervolume / best")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
