"""What early rejection saves: the README's compile (`simq compile --budget 30` on zoo:minilm-tweets)
run twice, one arm after the other, without and with early rejection (`--no-early-rejection`
against the default), the same seed. Writes docs/EARLY.md.

Per arm: the whole run's minutes, the search's (the candidates' evaluations), how many candidates
stopped scoring early and on how many examples, and the published front with its headline. The
first generation is the same candidates in both arms, so for them it also shows what the full
split said about each candidate the other arm rejected (the rule must never have stopped one that
is within the limit). An arm whose folder holds a finished run is read, not run again.

Usage: python tools/bench_early.py [--work DIR] [--budget N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402

from simq.eval import EarlyRejection, paired_drop  # noqa: E402
from simq.search import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARMS = {"full scoring": ["--no-early-rejection"], "early rejection": []}


def run_arm(out: Path, budget: int, extra: list[str]) -> float:
    """Minutes of `simq compile` into `out` (read from its record when the run is finished)."""
    record = out.parent / f"{out.name}-minutes.json"
    if (out / "summary.json").is_file() and record.is_file():
        return json.loads(record.read_text())["minutes"]
    simq = Path(sys.executable).with_name("simq")
    resume = ["--resume"] if (out / Store.FILENAME).is_file() else []
    start = time.perf_counter()
    subprocess.run([str(simq), "compile", "--budget", str(budget), "--out", str(out), *extra, *resume], check=True, env=os.environ)
    minutes = (time.perf_counter() - start) / 60
    record.write_text(json.dumps({"minutes": minutes, "resumed": bool(resume)}))
    return minutes


def read_arm(out: Path) -> tuple[dict, dict]:
    """(candidates by config, summary) of a finished run; each candidate with its drop against
    FP32, paired on the search's split (on what was scored), at early rejection's confidence."""
    store = Store(out / Store.FILENAME)
    try:
        records = store.records()
        reference = next(r for r in records if r.kind == "reference").per_example["search"]
        candidates = {
            json.dumps(r.config, sort_keys=True): (r, paired_drop(reference, r.per_example["search"], EarlyRejection.confidence))
            for r in records if r.kind == "candidate" and r.status == "ok"
        }  # fmt: skip
    finally:
        store.close()
    return candidates, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "early")
    parser.add_argument("--budget", type=int, default=30)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    minutes, arms = {}, {}
    for name, extra in ARMS.items():
        out = args.work / name.replace(" ", "-")
        minutes[name] = run_arm(out, args.budget, extra)
        arms[name] = read_arm(out)
    rows = []
    for name, (candidates, summary) in arms.items():
        stopped = [r for r, _ in candidates.values() if "scored_examples" in r.metrics]
        search = sum(r.seconds for r, _ in candidates.values()) / 60
        scored = ", ".join(f"{r.metrics['scored_examples']:,.0f}" for r in stopped) or "-"
        rows.append([name, f"{minutes[name]:.1f}", f"{search:.1f}", f"{search * 60 / len(candidates):.1f}", f"{len(stopped)} of {len(candidates)}", scored])
    published = []
    for name, (_, summary) in arms.items():
        for row in summary["rows"]:
            if row["kind"] == "candidate":
                published.append([name, f"#{row['id']}", f"{row['search_accuracy_drop']:+.2f}", f"{row['search_accuracy_bound']:+.2f}",
                                  f"{row['accuracy_drop']:+.2f} [{row['accuracy_drop_low']:+.2f}, {row['accuracy_drop_high']:+.2f}]",
                                  f"{row['latency_ratio']:.3f}", f"{row['size_ratio']:.3f}", row["config"]])  # fmt: skip
    early, full = arms["early rejection"][0], arms["full scoring"][0]
    both = [key for key in early if key in full and "scored_examples" in early[key][0].metrics]
    checks = [
        [f"#{early[k][0].id}", f"{early[k][0].metrics['scored_examples']:,.0f}", f"{early[k][1].estimate:+.2f} (≥ {2 * early[k][1].estimate - early[k][1].bound:+.2f})",
         f"{full[k][1].estimate:+.2f} [{full[k][1].low:+.2f}, {full[k][1].high:+.2f}]"]
        for k in both
    ]  # fmt: skip
    headlines = "\n".join(f"- {name}: {summary['headline']}" for name, (_, summary) in arms.items())
    doc = f"""# Early rejection: scoring stops once a candidate is clearly past the limit

Written by `python tools/bench_early.py --budget {args.budget}` on {cpu_name()}, 2 cores: the README's
compile (`simq compile --budget {args.budget}`: zoo:minilm-tweets, ort-cpu, at most 1 point below FP32, seed 0)
run twice, one arm after the other: without early rejection (`--no-early-rejection`), then with it
(the default). With it, a candidate's scoring on the 4,500 validation tweets stops after a quarter or
a half of the split (random whole batches, the same for every candidate) when the paired drop's
one-sided 99.5 % lower bound is past the allowed point.

| arm | whole run (min) | candidates' evaluations (min) | per candidate (s) | rejected early | examples they were scored on |
|---|---|---|---|---|---|
{chr(10).join('| ' + ' | '.join(r) + ' |' for r in rows)}

Headlines:

{headlines}

## Were the rejected candidates really past the limit?

Candidates that both arms evaluated (the first generation is the same) and the early arm rejected:
their drop against FP32 on the part of the split the early arm scored (its 99.5 % lower bound), and
on the whole split in the arm that scored everything (95 % interval).

{table(["candidate", "scored on", "drop, early arm (lower bound)", "drop on the whole split, other arm"], checks) if checks else "None: no candidate of the first generation was rejected."}

## The published fronts

Drop below FP32 in points (positive: worse) on validation, with its bound at the run's confidence
(what publishing uses), and on test with its 95 % interval; latency and size as ratios to FP32
from each run's own final pass.

{table(["arm", "model", "drop on validation", "its bound", "drop on test", "latency × FP32", "size × FP32", "config"], published)}
"""
    path = ROOT / "docs" / "EARLY.md"
    path.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
