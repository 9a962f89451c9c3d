"""The README's main job, timed from nothing: `simq compile --budget 30` on the default model, with
an empty cache (the zoo build included), as a new user runs it.

Runs the command exactly as the README gives it (a subprocess, the installed `simq`) in a new
folder with a new cache, reads its plain log (one line per phase and candidate, with elapsed
times), and writes to docs/COMPILE.md the wall time, the share of each phase, and the front it
published. The document's sections from "## Earlier runs" (or, without it, "## Before") on are
kept as they are (earlier runs to compare with; add the run this one replaces there by hand).

Usage: python tools/bench_default_compile.py [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, shown_path, table, tolerance_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["simq", "compile", "--budget", "30"]
_STAMP = re.compile(r"^\[\s*([\d.]+) min\] (.*)$")


def phases(log: str, total: float) -> dict[str, float]:
    """Minutes per phase, from the log's elapsed stamps. They count from the end of the
    preparation (the zoo build included) and the run ends just after the last one, so the
    preparation is the total less the last stamp, plus the time to the search's start."""
    stamps = [(float(m[1]), m[2]) for line in log.splitlines() if (m := _STAMP.match(line))]
    start = lambda text: next((t for t, what in stamps if what.startswith(text)), None)  # noqa: E731
    last = stamps[-1][0] if stamps else 0.0
    search, final = start("validating candidates") or 0.0, start("final pass") or last
    return {
        "preparation (zoo build, load, analysis, calibration, statistics, fusion, baselines built)": total - last + search,
        "search (reference, baselines and candidates evaluated)": final - search,
        "final pass (publish, re-time, score on test)": last - final,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "default-compile")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "COMPILE.md")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    cache = args.work / "cache"
    cache.mkdir(parents=True)
    simq = Path(sys.executable).with_name("simq")
    start = time.perf_counter()
    done = subprocess.run(
        [str(simq), *COMMAND[1:]], cwd=args.work, env={**os.environ, "SIMQ_CACHE_DIR": str(cache)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    (args.work / "log.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"simq compile failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    # The zoo build happens before the log's first stamp; its own record says how long it took.
    build = json.loads((cache / "minilm-tweets" / "info.json").read_text())["build_seconds"] / 60
    split = phases(done.stderr, minutes)
    with (args.work / "simq-out" / "pareto.csv").open() as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((args.work / "simq-out" / "summary.json").read_text())
    columns = ["id", "accuracy", "accuracy_drop", "accuracy_drop_low", "accuracy_drop_high", "search_accuracy_bound", "confirmed",
               "latency_ms", "latency_ratio", "latency_ratio_low", "latency_ratio_high", "size_ratio", "config"]  # fmt: skip
    previous = args.out.read_text() if args.out.exists() else ""
    kept = next((heading for heading in ("## Earlier runs", "## Before") if heading in previous), None)
    before = previous[previous.index(kept) :] if kept else ""
    phase_rows = [[name, f"{m:.1f}", f"{m / minutes:.0%}"] for name, m in split.items()]
    confidence = next((m.group(1) for line in summary.get("settings", []) if (m := re.search(r"at (\d+)% confidence", line))), "?")
    log = args.work / "log.txt"
    doc = f"""# The README's default compile

Written by `python tools/bench_default_compile.py` on {cpu_name()}, {os.cpu_count()} cores.

`{' '.join(COMMAND)}` (zoo:minilm-tweets, ort-cpu, objectives accuracy, latency and size, at most 1
point below FP32, LINAS, population 10, seed 0, latency measured) in a new folder with an **empty
cache**: **{minutes:.1f} minutes** of wall time, the zoo build ({build:.1f} min: embedding the tweets,
fitting the head, exporting) included.

{table(["phase", "minutes", "share"], phase_rows)}

(The zoo build is part of the preparation line. Phases are read off the run's plain log, which
stamps every phase and candidate with the elapsed time: `{shown_path(log)}`.)

{summary.get('headline') or ''}

The published front ({len(rows)} models: within 1 point of FP32 by the {confidence} % paired bound on the
4,500 validation tweets, at most 8, none slower than FP32; accuracy and its paired drop with the
95 % interval on the 2,808 test tweets; latency ratios to FP32 re-timed, in a process started for
it, until their 95 % interval is within {tolerance_text()}):

{table(columns, [[row[c] for c in columns] for row in rows])}

{before}"""
    args.out.write_text(doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
