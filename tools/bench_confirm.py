"""Does choosing the published front on re-timed latencies pay? Re-run the final pass of a
finished `simq compile` run (a copy of its folder, ``--resume``: the search's records as they
are, nothing evaluated again) and set what the search's labels would have published beside what
the final pass chose on its own timings. Writes docs/CONFIRM.md.

The final pass times every contender (`simq.search._final.contenders`: the front chosen on the
search's five-round labels, FP32, and the feasible models whose label 15 % lower would have put
them on the front) in one rotation with the baselines. So the label front's fastest model within
the accuracy limit, the published front's, and the bar are all timed in the same process, and
their speed-ups are same-run ratios with intervals. Each run is re-finished ``--runs`` times (two
by default), each time from a fresh copy, to see whether the verdict repeats.

Usage: python tools/bench_confirm.py OUT [OUT ...] [--runs 2] [--bar "NNCF INT8 (transformer)"]
       [--work .bench/confirm] [--doc docs/CONFIRM.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import shown_path, table  # noqa: E402

from simq.errors import SimqError  # noqa: E402
from simq.search import OBJECTIVES, Goal, Record, References, Store  # noqa: E402
from simq.search._final import CONFIRM_MARGIN, select_front  # noqa: E402
from simq.search._objectives import LIMITED  # noqa: E402
from simq.search._report import _within, speedup  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def refinished(out: Path, copy: Path) -> float:
    """Copy the finished run `out` to `copy` and finish it again (`--resume`); its minutes
    (none when `copy` was already re-finished: the benchmark resumes where it stopped)."""
    done = copy / "refinished.json"
    if done.is_file():
        return json.loads(done.read_text())["minutes"]
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(out, copy)
    start = time.monotonic()
    command = [sys.executable, "-m", "simq", "compile", "--config", str(out / "recipe.yaml"), "--out", str(copy), "--resume"]
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SimqError(f"re-finishing {out} failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")
    minutes = (time.monotonic() - start) / 60
    done.write_text(json.dumps({"minutes": minutes}))
    return minutes


def _ratio(record: Record) -> float:
    return record.final["latency_ratio"]


def _cell(record: Record) -> str:
    return f"{_ratio(record):.3f} [{record.final['latency_ratio_low']:.3f}, {record.final['latency_ratio_high']:.3f}]"


def _versus(bar: Record, model: Record) -> str:
    times, low, high = speedup(bar, model)
    return f"**{times:.2f}x** ({low:.2f}–{high:.2f})"


def analyse(copy: Path, bar_name: str | None) -> dict:
    """What the re-finished run in `copy` timed and chose, and what its labels would have chosen."""
    summary = json.loads((copy / "summary.json").read_text())
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    store = Store(copy / Store.FILENAME)
    try:
        settings, records = store.settings(), store.records()
    finally:
        store.close()
    by_id = {r.id: r for r in records}
    fp32 = next(r for r in records if r.kind == "reference")
    references = References(fp32, by_id[summary["accuracy_reference"]["id"]], settings["confidence"])
    limit = settings["max_accuracy_drop"]
    # The run's goal, as `simq compile` made it: its objectives, then its limits.
    metrics, limits = list(settings["objectives"]), {}
    for name, bound in (("accuracy", limit), ("latency", settings["max_latency_ms"] and settings["max_latency_ms"] / fp32.metrics["latency_ms"])):
        if bound is not None:
            metrics.append(name + LIMITED)
            limits[len(metrics) - 1] = bound
    goal = Goal(tuple(metrics), tuple(range(len(settings["objectives"]))), limits)
    searched = [r for r in records if r.kind in ("candidate", "reference") and r.status == "ok"]
    label_front = select_front(searched, references, goal, OBJECTIVES, recipe["final-models"], recipe["keep-slower"])

    def fastest(front: list[Record]) -> Record | None:
        within = [r for r in front if r.kind == "candidate" and "latency_ratio" in r.final and _within(r, references, limit)]
        return min(within, key=_ratio) if within else None

    baselines = {r.config["baseline"]: r for r in records if r.kind == "baseline" and "latency_ratio" in r.final}
    bar = baselines.get(bar_name) or baselines.get(summary["bar"]) or fp32  # the run's own where it has no `bar_name`
    timed = sorted((r for r in records if r.kind == "candidate" and "latency_ratio" in r.final), key=_ratio)
    return {
        "fingerprint": settings["target"], "model": settings["model"], "bar": bar, "limit": limit, "headline": summary["headline"],
        "by_label": fastest(label_front), "published": fastest([r for r in records if r.artifact]),
        "label_front": {r.id for r in label_front}, "published_ids": {r.id for r in records if r.artifact}, "timed": timed,
        "descriptions": {r.id: brief(r.config, fp32.config) for r in timed},
    }  # fmt: skip


def brief(config: dict, defaults: dict) -> str:
    """A config in a few words, from its knobs against FP32's (`defaults`): layers dropped,
    heads and FFN width kept, units by precision, and the float parts' precision."""
    share = lambda kind: sum(v for k, v in config.items() if k.startswith(kind)) / sum(v for k, v in defaults.items() if k.startswith(kind))  # noqa: E731
    units = Counter(v for k, v in config.items() if k.startswith("quant."))
    return " · ".join([
        f"{sum(bool(v) for k, v in config.items() if k.startswith('depth.'))} layers dropped",
        f"heads {share('heads.'):.0%} · FFN {share('ffn.'):.0%}", " ".join(f"{p} {n}" for p, n in units.most_common()),
        f"{config.get('precision', 'fp32')} float parts",
    ])  # fmt: skip


def _pick(result: dict, key: str) -> list[str]:
    model = result[key]
    if model is None:
        return ["none", "–", "–"]
    return [f"#{model.id}", _cell(model), _versus(result["bar"], model)]


def document(runs: dict[str, list[dict]], outs: dict[str, Path], minutes: dict[str, list[float]], bar: str | None) -> str:
    lines = [
        "# Choosing the published front on the final pass's timings",
        "",
        "Generated by `python tools/bench_confirm.py " + " ".join(str(shown_path(p)) for p in outs.values())
        + (f' --bar "{bar}"' if bar else "") + "` (fingerprints under each run's name).",
        "",
        "Each finished run is copied and finished again (`simq compile --config OUT/recipe.yaml --resume`): the search's records",
        "as they are, a new final pass. It times the contenders — the front chosen on the search's five-round labels, FP32, and",
        f"the feasible models whose label {CONFIRM_MARGIN:.0%} lower would have put them on the front — in one rotation with the",
        "baselines, in a process started for it, and publishes the front chosen on those timings. *By label* is the fastest",
        "model within the accuracy limit (judged on validation, as the run does) of the front the labels alone choose, *published*",
        "that of the front the final pass chose; both as the same rotation timed them (ratio to FP32 [95 % interval]), and",
        "their speed-up over the bar in that rotation, with the two intervals combined at their worst.",
        "",
    ]
    for name, results in runs.items():
        bar = results[0]["bar"]
        bar_name = bar.config.get("baseline", "FP32")
        limit = results[0]["limit"]
        lines += [
            f"## {name}", "", f"Fingerprint: `{results[0]['fingerprint']}`.", "",
            f"Bar: {bar_name}. Accuracy limit: {'none' if limit is None else f'{limit:g} point(s)'}.", "",
        ]  # fmt: skip
        rows = []
        for k, result in enumerate(results, 1):
            rows.append([
                str(k), f"{minutes[name][k - 1]:.1f}", str(len(result["timed"])), *_pick(result, "by_label"), *_pick(result, "published"),
                _cell(result["bar"]),
            ])  # fmt: skip
        lines += [table(
            ["re-finish", "minutes", "models timed", "by label", "its ratio", f"vs {bar_name}", "published", "its ratio", f"vs {bar_name}", f"{bar_name}'s ratio"],
            rows,
        ), ""]  # fmt: skip
        lines += ["Every model the final pass timed (first re-finish; label: the search's ratio to FP32):", ""]
        result = results[0]
        others = {r.id: r for r in results[1]["timed"]} if len(results) > 1 else {}
        rows = []
        for r in result["timed"]:
            where = ", ".join(w for w, ids in (("label front", result["label_front"]), ("published", result["published_ids"])) if r.id in ids)
            again = _cell(others[r.id]) if r.id in others else "–"
            rows.append([
                f"#{r.id}", result["descriptions"].get(r.id, ""), f"{r.metrics['latency_ratio']:.3f}", _cell(r),
                f"{_ratio(r) / r.metrics['latency_ratio']:.2f}", again, where or "–",
            ])  # fmt: skip
        lines += [table(["model", "config", "label", "final pass", "final / label", "second re-finish", "on"], rows), ""]
        lines += [f"Headline of the first re-finish: {result['headline']}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", type=Path, nargs="+", help="--out folders of finished simq compile runs")
    parser.add_argument("--runs", type=int, default=2, help="re-finishes of each run, each from a fresh copy (default 2)")
    parser.add_argument("--bar", help="the baseline speed-ups are over, in the runs that have it (default: each run's own bar)")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "confirm", help="where the copies are re-finished")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "CONFIRM.md", help="where to write the tables")
    args = parser.parse_args()
    for out in args.outs:
        if not (out / "recipe.yaml").is_file() or not (out / Store.FILENAME).is_file():
            parser.error(f"{out} is not the folder of a finished simq compile run (no recipe.yaml or {Store.FILENAME})")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    runs: dict[str, list[dict]] = {}
    minutes: dict[str, list[float]] = {}
    outs = {out.name: out for out in args.outs}
    try:
        for name, out in outs.items():
            for k in range(1, args.runs + 1):
                print(f"{name}: re-finish {k} of {args.runs}", flush=True)
                minutes.setdefault(name, []).append(refinished(out, args.work / f"{name}-{k}"))
                runs.setdefault(name, []).append(analyse(args.work / f"{name}-{k}", args.bar))
    except SimqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    args.doc.write_text(document(runs, outs, minutes, args.bar))
    print(f"wrote {shown_path(args.doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
