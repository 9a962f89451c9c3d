"""What early stopping saves: a compile (the README's, `simq compile --budget 30` on
zoo:minilm-tweets, or `--model`, e.g. a `simq tune` folder) run twice, one arm after the other,
without and with early stopping (`--no-early-rejection --no-early-acceptance` against
`--early-acceptance`, rejection being on by default), the same seed. Writes docs/EARLY.md (or `--doc`).

Per arm: the whole run's minutes, the search's (the candidates' evaluations), how many candidates
stopped scoring early, which way, and on how many examples, and the published front with its
headline. The first generation is the same candidates in both arms, so for them it also shows
what the full split said about each candidate the other arm stopped (the rule must never have
rejected one that is within the limit, nor accepted one that is past it). An arm whose folder
holds a finished run is read, not run again.

Usage: python tools/bench_early.py [--work DIR] [--budget N] [--model MODEL] [--doc NAME]
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

from simq.eval import EarlyStopping, paired_drop  # noqa: E402
from simq.search import Store  # noqa: E402
from simq.search._job import ORIGINAL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARMS = {"full scoring": ["--no-early-rejection", "--no-early-acceptance"], "early stopping": ["--early-acceptance"]}


def run_arm(out: Path, budget: int, extra: list[str], model: list[str]) -> float:
    """Minutes of `simq compile` into `out` (read from its record when the run is finished)."""
    record = out.parent / f"{out.name}-minutes.json"
    if (out / "summary.json").is_file() and record.is_file():
        return json.loads(record.read_text())["minutes"]
    simq = Path(sys.executable).with_name("simq")
    resume = ["--resume"] if (out / Store.FILENAME).is_file() else []
    start = time.perf_counter()
    subprocess.run([str(simq), "compile", *model, "--budget", str(budget), "--out", str(out), *extra, *resume], check=True, env=os.environ)
    minutes = (time.perf_counter() - start) / 60
    record.write_text(json.dumps({"minutes": minutes, "resumed": bool(resume)}))
    return minutes


def read_arm(out: Path) -> tuple[dict, dict]:
    """(candidates by config, summary) of a finished run; each candidate with its drop below the
    accuracy reference (the model before tuning, for a tuned folder; else FP32), paired on the
    search's split (on what was scored), at early stopping's confidence."""
    store = Store(out / Store.FILENAME)
    try:
        records = store.records()
        original = [r for r in records if r.config.get("baseline") == ORIGINAL]
        reference = (original or [r for r in records if r.kind == "reference"])[0].per_example["search"]
        candidates = {
            json.dumps(r.config, sort_keys=True): (r, paired_drop(reference, r.per_example["search"], EarlyStopping.confidence))
            for r in records if r.kind == "candidate" and r.status == "ok"
        }  # fmt: skip
    finally:
        store.close()
    return candidates, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "early")
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--model", help="the model to compile (default: the README's, zoo:minilm-tweets)")
    parser.add_argument("--doc", default="EARLY.md")
    args = parser.parse_args()
    model = [args.model] if args.model else []
    args.work.mkdir(parents=True, exist_ok=True)
    minutes, arms = {}, {}
    for name, extra in ARMS.items():
        out = args.work / name.replace(" ", "-")
        minutes[name] = run_arm(out, args.budget, extra, model)
        arms[name] = read_arm(out)
    rows = []
    for name, (candidates, summary) in arms.items():
        stopped = [r for r, _ in candidates.values() if "scored_examples" in r.metrics]
        accepted = [r for r in stopped if r.metrics.get("accepted_early")]
        search = sum(r.seconds for r, _ in candidates.values()) / 60
        scored = ", ".join(f"{r.metrics['scored_examples']:,.0f}" for r in stopped) or "-"
        rows.append([
            name, f"{minutes[name]:.1f}", f"{search:.1f}", f"{search * 60 / len(candidates):.1f}",
            f"{len(stopped) - len(accepted)} of {len(candidates)}", f"{len(accepted)} of {len(candidates)}", scored,
        ])  # fmt: skip
    published = []
    for name, (_, summary) in arms.items():
        for row in summary["rows"]:
            if row["kind"] == "candidate":
                published.append([name, f"#{row['id']}", f"{row['search_accuracy_drop']:+.2f}", f"{row['search_accuracy_bound']:+.2f}",
                                  f"{row['accuracy_drop']:+.2f} [{row['accuracy_drop_low']:+.2f}, {row['accuracy_drop_high']:+.2f}]",
                                  f"{row['latency_ratio']:.3f}", f"{row['size_ratio']:.3f}", row["config"]])  # fmt: skip
    early, full = arms["early stopping"][0], arms["full scoring"][0]
    both = [key for key in early if key in full and "scored_examples" in early[key][0].metrics]

    def check(k: str) -> list[str]:
        r, drop = early[k]
        bound = drop.bound if r.metrics.get("accepted_early") else 2 * drop.estimate - drop.bound
        return [
            f"#{r.id}", "accepted" if r.metrics.get("accepted_early") else "rejected", f"{r.metrics['scored_examples']:,.0f}",
            f"{drop.estimate:+.2f} ({'≤' if r.metrics.get('accepted_early') else '≥'} {bound:+.2f})",
            f"{full[k][1].estimate:+.2f} [{full[k][1].low:+.2f}, {full[k][1].high:+.2f}]",
        ]  # fmt: skip

    checks = [check(k) for k in both]
    accepted_full = [full[k][1] for k in both if early[k][0].metrics.get("accepted_early")]
    rejected_full = [full[k][1] for k in both if not early[k][0].metrics.get("accepted_early")]
    (a, (a_cands, _)), (b, (b_cands, _)) = arms.items()
    read_off = (
        f"Early stopping took the run from {minutes[a]:.1f} to {minutes[b]:.1f} min and the candidates' evaluations from "
        f"{sum(r.seconds for r, _ in a_cands.values()) / 60:.1f} to {sum(r.seconds for r, _ in b_cands.values()) / 60:.1f} min (one run per arm)."
        + (f" On the whole split, the drops of the accepted candidates of the first generation are at most {max(d.high for d in accepted_full):+.2f}"
           " points (the upper end of their 95 % intervals; negative: above the reference), inside the 1-point limit." if accepted_full else "")
        + (f" The rejected ones are at least {min(d.low for d in rejected_full):+.2f} points below it." if rejected_full else "")
    )  # fmt: skip
    headlines = "\n".join(f"- {name}: {summary['headline']}" for name, (_, summary) in arms.items())
    command = f"python tools/bench_early.py --budget {args.budget}" + (f" --model {args.model} --doc {args.doc}" if args.model else "")
    doc = f"""# Early stopping: scoring stops once a candidate is clearly past the limit, or clearly within it

Written by `{command}` on {cpu_name()}, 2 cores: `simq compile {args.model or ''}
--budget {args.budget}` ({'the README compile: ' if not args.model else ''}ort-cpu, at most 1 point below the accuracy reference,
seed 0) run twice, one arm after the other: without early stopping (`--no-early-rejection
--no-early-acceptance`), then with it (`--early-acceptance`; rejection is on by default). With it, a candidate's scoring on the
validation split stops after a quarter or a half of it (random whole batches, the same for every
candidate) when the paired drop's one-sided 99.5 % lower bound is past the allowed point
(rejected), or its 99.5 % upper bound is within it (accepted).

{table(["arm", "whole run (min)", "candidates' evaluations (min)", "per candidate (s)", "rejected early", "accepted early", "examples they were scored on"], rows)}

{read_off}

Headlines:

{headlines}

## Were the stopped candidates really past the limit, or within it?

Candidates that both arms evaluated (the first generation is the same) and the early arm stopped:
their drop below the accuracy reference on the part of the split the early arm scored (the 99.5 %
bound that stopped it), and on the whole split in the arm that scored everything (95 % interval).

{table(["candidate", "stopped", "scored on", "drop, early arm (bound)", "drop on the whole split, other arm"], checks) if checks else "None: no candidate of the first generation was stopped."}

## The published fronts

Drop below the accuracy reference in points (positive: worse) on validation, with its bound at the run's confidence
(what publishing uses), and on test with its 95 % interval; latency and size as ratios to FP32
from each run's own final pass.

{table(["arm", "model", "drop on validation", "its bound", "drop on test", "latency × FP32", "size × FP32", "config"], published)}
"""
    path = ROOT / "docs" / args.doc
    path.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
