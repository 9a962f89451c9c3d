"""How far does a ratio to FP32 drift while the host's load changes? Times every published model
of a finished `simq compile` run against FP32 in windows (fresh sessions each, one model at a time
in blocks of paired rounds), in two fresh processes, and relates each window's ratio to how fast
the FP32 reference ran in it. Writes docs/DRIFT.md.

Besides the final pass's statistic (median of per-round ratios), two others are computed from the
same calls: the ratio of the 10th percentiles of per-call latency, and the median of per-round
ratios over the quiet rounds only (the reference's round within QUIET of its fastest rounds in the
process). Each is judged by its spread over all windows of both processes.

Usage: python tools/bench_drift.py OUT [--model zoo:minilm-tweets] [--windows 5] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table, timing_text  # noqa: E402
from bench_retime import published, run_ratios  # noqa: E402

from simq.targets import PER_ROUND, interleave, paired_ratio, round_ratios  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUIET = 1.10  # a quiet round: the reference's round median within 10 % of its fast rounds (their 5th percentile)


def child(out: Path, model: str, windows: int, rounds: int) -> list[dict[str, dict[str, list[float]]]]:
    """In this process: per window, every published model's and its reference's per-call times."""
    recorded = []
    with tempfile.TemporaryDirectory() as tmp:
        target, reference, feed, artifacts = published(out, model, Path(tmp))
        for _ in range(windows):
            window = {}
            for i, artifact in artifacts.items():
                calls = {"reference": target.runner(reference, feed), "candidate": target.runner(artifact, feed)}
                window[i] = interleave(calls, rounds=rounds, per_round=PER_ROUND)
            recorded.append(window)
    return recorded


def _reference_rounds(times: dict[str, list[float]]) -> list[float]:
    """The reference's median call in each round."""
    calls = times["reference"]
    return [statistics.median(calls[k : k + PER_ROUND]) for k in range(0, len(calls), PER_ROUND)]


def statistics_of(times: dict[str, list[float]], quiet_ms: float) -> dict[str, float | None]:
    """The three statistics of one model in one window (None: too few quiet rounds)."""
    ratios = round_ratios(times["candidate"], times["reference"], PER_ROUND)
    quiet = [ratio for ratio, reference in zip(ratios, _reference_rounds(times)) if reference <= QUIET * quiet_ms]
    return {
        "median of round ratios": paired_ratio(times["candidate"], times["reference"], PER_ROUND),
        "10th percentiles": float(np.percentile(times["candidate"], 10) / np.percentile(times["reference"], 10)),
        "quiet rounds only": statistics.median(quiet) if len(quiet) >= 5 else None,
    }


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the --out folder of a finished simq compile run")
    parser.add_argument("--model", default="zoo:minilm-tweets", help="the model the run compiled")
    parser.add_argument("--windows", type=int, default=5, help="windows per process")
    parser.add_argument("--rounds", type=int, default=20, help="paired rounds per model per window")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.out, args.model, args.windows, args.rounds)))
        return
    start = time.time()
    processes = []
    for _ in range(2):  # each in a fresh process
        command = [sys.executable, __file__, str(args.out), "--model", args.model, "--windows", str(args.windows), "--rounds", str(args.rounds), "--child"]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        processes.append(json.loads(done.stdout.strip().splitlines()[-1]))
    original = run_ratios(args.out)
    ids = list(original)  # by id

    window_rows, per_model = [], {i: {} for i in ids}
    correlations = []
    deviations: dict[bool, list[float]] = {True: [], False: []}  # by whether the window was quiet: ratio / the run's - 1
    for p, windows in enumerate(processes, 1):
        quiet_ms = float(np.percentile([r for w in windows for i in ids for r in _reference_rounds(w[i])], 5))
        ratios: dict[str, list[float]] = {i: [] for i in ids}  # this process's windows, in order
        for w, window in enumerate(windows, 1):
            reference_ms = statistics.median(t for i in ids for t in window[i]["reference"])
            row = [f"{p}.{w}", f"{reference_ms:.2f}", f"{reference_ms / quiet_ms:.2f}"]
            for i in ids:
                values = statistics_of(window[i], quiet_ms)
                for name, value in values.items():
                    per_model[i].setdefault(name, []).append(value)
                ratios[i].append(values["median of round ratios"])
                row.append(f"{values['median of round ratios']:.3f}")
                deviations[reference_ms <= QUIET * quiet_ms].append(values["median of round ratios"] / original[i] - 1)
            window_rows.append(row)
        for i in ids:
            loads = [statistics.median(window[i]["reference"]) for window in windows]
            correlations.append(stats.spearmanr(loads, ratios[i]).statistic)
    window_rows.append(["the run's final pass", "", ""] + [f"{original[i]:.3f}" for i in ids])

    names = list(next(iter(per_model.values())))
    spread_rows, worst = [], {}
    for i in ids:
        row = [i, f"{original[i]:.3f}"]
        for name in names:
            values = [v for v in per_model[i][name] if v is not None]
            row.append(f"{spread(values):.1%} ({len(values)} windows)" if len(values) >= 2 else "–")
            if len(values) >= 2:
                worst[name] = max(worst.get(name, 0.0), spread(values))
        spread_rows.append(row)
    worst_text = "; ".join(f"{name} {value:.1%}" for name, value in worst.items())
    agreement = []
    for quiet, label in ((True, f"FP32 within {QUIET - 1:.0%} of its quiet level"), (False, f"FP32 more than {QUIET - 1:.0%} above it")):
        values = deviations[quiet]
        if values:
            within = sum(abs(v) <= 0.03 for v in values) / len(values)
            agreement.append([label, str(len(values)), f"{within:.0%}", f"{statistics.median(values):+.1%}", f"{max(values, key=abs):+.1%}"])
    minutes = (time.time() - start) / 60

    doc = f"""# Drift: how far a ratio to FP32 moves with the host's load

Generated by `python tools/bench_drift.py {args.out} --windows {args.windows} --rounds {args.rounds}` in {minutes:.0f} min on {cpu_name()}, 2 threads, {timing_text()}.

Every published model of that run timed against FP32 in {args.windows} windows in each of two fresh
processes: per window and model, fresh sessions of both, {args.rounds} paired rounds of {PER_ROUND} calls, one
model at a time. The reference's latency tells how loaded the host was: its
median call in the window, and that over the process's quiet level (the 5th percentile of its
round medians).

## Each window's ratio to FP32 (median of per-round ratios, the final pass's statistic)

{table(["process.window", "FP32 ms", "FP32 × quiet", *[f"#{i}" for i in ids]], window_rows)}

How many windows' ratios lie within ±3 % of the run's own, by how loaded the host was in the window
(model-windows; the final pass's statistic):

{table(["windows", "model-windows", "within ±3 % of the run", "median difference", "largest difference"], agreement)}

Rank correlation between the reference's latency in a window and the model's ratio there
(Spearman, per model and process): median {statistics.median(correlations):+.2f}, from {min(correlations):+.2f} to {max(correlations):+.2f}.

## Spread of each statistic over all windows (largest over smallest, minus 1)

Windows with fewer than 5 quiet rounds have no quiet-rounds value.

{table(["model", "ratio in the run", *names], spread_rows)}

Largest spread per statistic: {worst_text}.
"""
    (ROOT / "docs" / "DRIFT.md").write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
