"""Workers idle at the generation barrier: one job's search on a local Ray cluster of 2 workers,
by generations and steady-state (`--steady-state`), in turn, twice each. Writes docs/STEADY.md.

The job predicts latency with one cost model trained first (as tools/bench_scale.py), so workers
only build and score, and both modes see the same kind of candidates. The idle share of a run is
the part of its worker time (workers x the search phase's wall time, from the first ask to the
last commit) in which no candidate was being built or scored: 1 - (sum of the candidates'
evaluation seconds) / (workers x wall). It holds the generation barrier (workers done with their
part of a generation wait for its slowest candidate and for the driver's next ask), Ray's own
overhead and the driver's asks while nothing is in flight.

Usage: python tools/bench_steady.py [--model zoo:minilm-tweets] [--budget 16] [--population 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402
from bench_scale import compile_once  # noqa: E402

from simq.cluster import RayExecutor  # noqa: E402
from simq.search import CompileOptions, JobSpec, prepare_job  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


def idle_share(run: dict) -> float:
    return 1.0 - sum(run["evaluation_s"]) / (WORKERS * run["search_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo:minilm-tweets")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode, interleaved")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "steady")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "STEADY.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("preparing, with a cost model", file=sys.stderr, flush=True)
    job = prepare_job(JobSpec(model=args.model, threads=1, cost_model=args.work / "costmodel", cost_model_samples=12), Zoo()).job
    generations = CompileOptions(budget=args.budget, population=args.population, latency="predicted", seed=0, final_models=1)
    modes = {"by generations": generations, "steady-state": replace(generations, steady_state=True)}
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode, options in modes.items():
            print(f"round {round_ + 1}: {mode}", file=sys.stderr, flush=True)
            out = args.work / f"{mode.split()[0]}-{round_}"
            runs[mode].append(compile_once(job, options, out, RayExecutor(num_cpus=WORKERS, measured=False)))
    rows = []
    for mode, done in runs.items():
        for i, r in enumerate(done):
            steps = r["steps"]
            rows.append([
                mode, i + 1, f"{r['search_s']:.0f}", f"{sum(r['evaluation_s']):.0f}", f"{statistics.median(r['evaluation_s']):.1f}",
                f"{max(r['evaluation_s']):.1f}", f"{steps['ask'][1]:.1f} ({steps['ask'][0]})", f"**{idle_share(r):.0%}**",
                f"{args.budget / r['search_s'] * 60:.1f}", r["failed"],
            ])  # fmt: skip
    shares = {mode: [idle_share(r) for r in done] for mode, done in runs.items()}
    before, after = (statistics.mean(shares[m]) for m in modes)
    agree = all(max(v) - min(v) <= 0.05 for v in shares.values())
    doc = f"""# Steady-state search: workers that do not wait for a generation

Written by `python tools/bench_steady.py --model {args.model} --budget {args.budget} --population {args.population} --rounds {args.rounds}`
on {cpu_name()}, {WORKERS} cores.

`{args.model}` on ort-cpu, one thread per evaluation, latency predicted by one cost model trained
first (workers build and score only), LINAS with population {args.population}, seed 0, budget
{args.budget}, on a local Ray cluster of {WORKERS} workers; the two modes in turn, {args.rounds} runs each.
*By generations*, the driver asks for {args.population} candidates, waits until all are evaluated,
tells them, asks again. *Steady-state* (`simq compile --steady-state`), it keeps {args.population}
in flight, tells each result as it arrives and starts the next candidate at once, asking LINAS
again whenever its last answer is used up (LINAS then avoids what is still in flight).

The idle share is the part of the workers' time (workers x search wall time) in which no
candidate was being built or scored: the generation barrier, the driver's asks while nothing is
in flight, Ray's overhead.

{table(["mode", "run", "search s", "evaluation s (sum)", "median s", "longest s", "asks s (calls)", "idle share", "candidates / min", "failed"], rows)}

Mean idle share: **{before:.0%}** by generations, **{after:.0%}** steady-state
({'the runs of each mode agree within 5 points' if agree else 'the runs of a mode differ by more than 5 points: read the ranks with care'}).
Steady-state runs ask in the order results arrive, so two of them (and a resumed one) may
validate different candidates; runs by generations repeat candidate for candidate.
"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
