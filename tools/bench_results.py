"""The headline table: `simq compile` on four model families and two targets, against the baselines.

Runs the public CLI (`simq compile`, a subprocess per model and target) on the BERT, ViT,
multi-modal and ResNet models of the zoo, on ort-cpu and openvino-cpu, each with one protocol:
a budget and a time limit that fit a few hours on a 2-core machine, `--max-accuracy-drop 1` at the
default confidence. Every run keeps its folder under --work; a finished run is not repeated and a
killed one is resumed (`--resume`), so the benchmark can be run in pieces. Then it reads what each
run published (``summary.json``: the final pass's paired latency ratios with their intervals,
paired accuracy drops on validation and test) and writes docs/RESULTS.md, its prose computed from
those numbers, and one Pareto plot per model to img/ beside it (docs/img/).

Usage: python tools/bench_results.py [--only MODEL ...] [--report-only] [--out DOC]

With --only and another --out, the document covers those models alone (a re-run of some rows on
another machine or protocol), its plots named after the document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, final_pass_protocol, shown_path, table, timing_text  # noqa: E402

from simq.search import SUMMARY_FILE, Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "RESULTS.md"
TARGETS = ("ort-cpu", "openvino-cpu")
#: The limit every run is given (`--max-accuracy-drop`): points of accuracy, or of output cosine
#: to FP32 (in percent) for models with random weights.
LIMIT = 1.0
#: The INT8 model users' own tool makes, per target: Optimum's CPU recipe, NNCF's PTQ.
TOOLS = ("ORT optimizer + dynamic INT8", "NNCF INT8 (transformer)", "NNCF INT8")
PAPER = "up to 4.80x lower latency and 3.44x smaller than fully INT8, no accuracy loss (best case over its models)"


@dataclass(frozen=True)
class Run:
    model: str
    family: str
    budget: int
    minutes: float
    weights: str


RUNS = (
    # 30 candidates at 20 minutes: on an AVX2-only EPYC a minilm candidate takes ~40 s to build,
    # score and time, and 10 minutes stopped the search before its depth anchors.
    Run("minilm-tweets", "BERT", 30, 20, "real weights, tweets (3 classes)"),
    Run("digits-vit", "ViT", 30, 2, "trained on digits"),
    Run("digits-resnet", "ResNet", 30, 2, "trained on digits"),
    Run("bert-base", "BERT", 16, 4, "random weights, 128 tokens"),
    Run("clip-small", "multi-modal", 24, 3, "random weights (two towers)"),
    Run("vit-base", "ViT", 16, 4, "random weights, 224x224"),
    Run("resnet50", "ResNet", 20, 4, "random weights"),
)


def _write_lines(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def command(run: Run, target: str, out: Path) -> list[str]:
    return [
        "simq", "compile", f"zoo:{run.model}", "--target", target, "--budget", str(run.budget),
        "--time-limit", f"{run.minutes:g}", "--max-accuracy-drop", f"{LIMIT:g}", "--out", str(out),
    ]  # fmt: skip


def shown(cmd: list[str], work: Path) -> str:
    return " ".join(c if not c.startswith(str(work)) else f"OUT/{Path(c).name}" for c in cmd)


def provenance() -> dict:
    """The code a run was made with: the last commit that changed the package (src/ and what it
    installs with), marked "+changes" when the working tree differs from it there, and the date."""
    git, code = ["git", "-C", str(ROOT)], ["--", "src", "pyproject.toml", "constraints.txt"]
    commit = subprocess.run([*git, "log", "-1", "--format=%h", *code], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", *code], capture_output=True, text=True).stdout.strip()
    return {"commit": commit + ("+changes" if changed else ""), "date": time.strftime("%Y-%m-%d", time.gmtime())}


def execute(run: Run, target: str, work: Path) -> dict:
    """Run (or resume, or skip) one compile; its record of what happened."""
    out = work / f"{run.model}-{target}"
    marker = out / "bench.json"
    if marker.exists():
        return json.loads(marker.read_text())
    cmd = command(run, target, out)
    resume = (out / Store.FILENAME).exists()
    simq = str(Path(sys.executable).with_name("simq"))
    print(f"== {shown(cmd, work)}{' --resume' if resume else ''}", file=sys.stderr, flush=True)
    made_with, start = provenance(), time.time()  # the code as the run starts
    # Every invocation's wall time is kept, so a run finished over several (killed, resumed) adds
    # up: each is logged as it starts, and one killed is timed to its store's last write.
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench-invocations.jsonl"
    invocations = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for killed in (i for i in invocations if "minutes" not in i):
        end = (out / Store.FILENAME).stat().st_mtime if resume else killed["started"]
        killed.update(minutes=max(0.0, end - killed["started"]) / 60, returncode=None, killed=True)
    invocations.append({"started": start})
    _write_lines(log, invocations)
    done = subprocess.run(
        [simq, *cmd[1:], *(["--resume"] if resume else [])], stderr=subprocess.PIPE, text=True, check=False
    )
    sys.stderr.write(done.stderr[-3000:])
    invocations[-1].update(minutes=(time.time() - start) / 60, returncode=done.returncode)
    _write_lines(log, invocations)
    minutes = sum(i["minutes"] for i in invocations)
    record = {"command": shown(cmd, work), "minutes": minutes, "returncode": done.returncode, **made_with}
    if done.returncode != 0:
        record["error"] = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return record  # not marked: the next invocation tries again
    record["stopped_early"] = "stopped at its time limit" in done.stderr
    marker.write_text(json.dumps(record))
    return record


@dataclass
class Outcome:
    """One finished run, read back from its ``summary.json`` (what `simq compile` published) and,
    for the plot's cloud of searched candidates, its store."""

    run: Run
    target: str
    info: dict
    summary: dict
    searched: list[tuple[float, float]]  # (latency × FP32, drop on the search split) of every validated candidate
    folder: Path  # the run's --out

    @classmethod
    def read(cls, run: Run, target: str, out: Path, info: dict) -> Outcome:
        summary = json.loads((out / SUMMARY_FILE).read_text())
        store = Store(out / Store.FILENAME)
        try:
            records = store.records()
        finally:
            store.close()
        reference = next(r for r in records if r.kind == "reference" and "accuracy" in r.metrics)
        searched = [
            (r.metrics["latency_ratio"], reference.metrics["accuracy"] - r.metrics["accuracy"])
            for r in records
            if r.kind == "candidate" and r.status == "ok" and "latency_ratio" in r.metrics and "accuracy" in r.metrics
        ]
        return cls(run, target, info, summary, searched, out)

    @property
    def reference(self) -> dict:
        return next(r for r in self.summary["rows"] if r["kind"] == "reference")

    @property
    def baselines(self) -> list[dict]:
        return [r for r in self.summary["rows"] if r["kind"] == "baseline"]

    @property
    def published(self) -> list[dict]:
        return sorted((r for r in self.summary["rows"] if r["kind"] == "candidate"), key=lambda r: r["latency_ratio"])

    def within(self, row: dict) -> bool:
        """Within the limit as `simq compile` decides it: by the paired bound on validation."""
        bound = row.get("search_accuracy_bound")
        return row["kind"] == "reference" or (bound is not None and bound <= LIMIT)

    def best_baseline(self) -> dict:
        """The fastest of FP32 and the baselines within the limit (chosen on validation)."""
        return min([r for r in [self.reference, *self.baselines] if self.within(r)], key=lambda r: r["latency_ratio"])

    def tool(self) -> dict | None:
        """The INT8 model users' own tool makes (the recipe, NNCF INT8), within the limit or not."""
        return next((r for name in TOOLS for r in self.baselines if r["baseline"] == name), None)

    def fastest(self) -> dict | None:
        accepted = [r for r in self.published if self.within(r)]
        return accepted[0] if accepted else None

    def smallest(self) -> dict | None:
        accepted = [r for r in self.published if self.within(r)]
        return min(accepted, key=lambda r: r["size_ratio"]) if accepted else None


def name(row: dict) -> str:
    return row["baseline"] or ("FP32" if row["kind"] == "reference" else f"SimQ #{row['id']}")


def speedup(base: dict, ours: dict) -> tuple[float, float | None, float | None]:
    """How much faster `ours` runs than `base` in the run's final pass, with the interval of the
    two paired ratios combined at their worst (as the run's headline gives it)."""
    value = base["latency_ratio"] / ours["latency_ratio"]
    if base["kind"] == "reference":
        low, high = 1 / ours["latency_ratio_high"], 1 / ours["latency_ratio_low"]
        return value, low, high
    bounds = [
        base.get("latency_ratio_low"),
        base.get("latency_ratio_high"),
        ours.get("latency_ratio_low"),
        ours.get("latency_ratio_high"),
    ]
    if None in bounds:
        return value, None, None
    return value, bounds[0] / bounds[3], bounds[1] / bounds[2]


def times(value: tuple[float, float | None, float | None]) -> str:
    x, low, high = value
    return f"{x:.2f}x" + (f" ({low:.2f}–{high:.2f})" if low is not None else "")


def drop_text(row: dict) -> str:
    if row["kind"] == "reference":
        return "+0.00"
    d, low, high = row["accuracy_drop"], row.get("accuracy_drop_low"), row.get("accuracy_drop_high")
    text = f"{-d:+.2f}" + (f" [{-high:+.2f}, {-low:+.2f}]" if low is not None else "")
    return text + (" beyond" if row.get("confirmed") == "beyond the limit" else "")


def fmt_row(o: Outcome, label: str, r: dict) -> list[str]:
    bound = r.get("search_accuracy_bound")
    latency = f"{r['latency_ratio']:.3f}" + (
        f" [{r['latency_ratio_low']:.3f}, {r['latency_ratio_high']:.3f}]"
        if r["kind"] != "reference" and r.get("latency_ratio_low") is not None
        else ""
    )
    return [
        label, f"{r['accuracy']:.2f}", "" if bound is None or r["kind"] == "reference" else f"{bound:+.2f}",
        drop_text(r), f"{r['latency_ms']:.2f}", latency, f"{r['size_ratio']:.2f}",
    ]  # fmt: skip


def model_section(outcomes: list[Outcome], image: str) -> str:
    run = outcomes[0].run
    parts = [
        f"### {run.model} ({run.family}; {run.weights})\n",
        f"![Pareto fronts of {run.model}](img/{image})\n",
    ]
    for o in outcomes:
        score = o.summary["score"]
        rows = [fmt_row(o, "FP32", o.reference)] + [fmt_row(o, r["baseline"], r) for r in o.baselines]
        rows += [fmt_row(o, f"SimQ #{r['id']}: {r['config']}", r) for r in o.published]
        outside = sum(not o.within(r) for r in o.published)
        parts.append(
            f"**{o.target}** — `{o.info['command']}` ({len(o.searched)} candidates validated, "
            f"{o.info['minutes']:.1f} min{', stopped at the time limit' if o.info.get('stopped_early') else ''}, "
            f"{made(o.info)}; "
            f"{len(o.published)} published, {outside} of them beyond the limit on validation). "
            f"{o.summary.get('headline') or ''}\n\n"
            f"{table(['model', score, 'validation bound', 'Δ test [95 %]', 'ms', 'latency × FP32 [95 %]', 'size × FP32'], rows)}\n"
        )
    return "\n".join(parts)


def made(info: dict) -> str:
    """When and on which code a run was made, as its marker records it."""
    if "commit" not in info:
        return "date and commit not recorded"
    return f"run {info['date']} at commit {info['commit']}" + (f" ({info['note']})" if info.get("note") else "")


def summary_row(o: Outcome) -> list[str]:
    base, tool, fastest, smallest = o.best_baseline(), o.tool(), o.fastest(), o.smallest()
    vs_tool = ""
    if tool is not None and fastest is not None:
        vs_tool = f"{tool['baseline']} {tool['latency_ratio']:.2f}: {times(speedup(tool, fastest))}"
    if fastest is None:
        return [
            o.run.model,
            o.target,
            f"none within {LIMIT:g}",
            "",
            "",
            f"{name(base)} {base['latency_ratio']:.2f}",
            "",
            vs_tool,
        ]
    return [
        o.run.model, o.target, f"#{fastest['id']} {fastest['latency_ratio']:.2f} ({drop_text(fastest)})",
        f"{smallest['size_ratio']:.2f} ({1 / smallest['size_ratio']:.1f}x)", o.summary["score"],
        f"{name(base)} {base['latency_ratio']:.2f}", times(speedup(base, fastest)), vs_tool,
    ]  # fmt: skip


def findings(outcomes: list[Outcome]) -> list[str]:
    """The prose under the summary, computed from the runs (never typed)."""
    lines = []
    for target in TARGETS:
        runs = [o for o in outcomes if o.target == target]
        if not runs:
            continue
        ahead = [(o, o.fastest()) for o in runs if o.fastest() is not None]
        vs_base = ", ".join(
            f"{o.run.model} {times(speedup(o.best_baseline(), f))} vs {name(o.best_baseline())}" for o, f in ahead
        )
        vs_tool = ", ".join(f"{o.run.model} {times(speedup(o.tool(), f))}" for o, f in ahead if o.tool() is not None)
        none = [o.run.model for o in runs if o.fastest() is None]
        lines.append(
            f"- **{target}**: fastest published model within {LIMIT:g} point against the best baseline within it: {vs_base or 'none'}."
        )
        if vs_tool:
            lines.append(
                f"  Against the INT8 model users' own tool makes ({' / '.join(TOOLS)}), within the limit or not: {vs_tool}."
            )
        if none:
            lines.append(f"  No published model within the limit: {', '.join(none)}.")
        beyond = [
            (o.run.model, r["id"])
            for o in runs
            for r in o.published
            if o.within(r) and r.get("confirmed") == "beyond the limit"
        ]
        total = sum(o.within(r) for o in runs for r in o.published)
        lines.append(
            f"  Published within the limit on validation and beyond it on test (95 % interval wholly past it): {len(beyond)} of {total}."
        )
    return lines


def plot(outcomes: list[Outcome], path: Path) -> None:
    fig, axes = plt.subplots(1, len(outcomes), figsize=(5.5 * len(outcomes), 4), squeeze=False)
    for ax, o in zip(axes[0], outcomes):
        if o.searched:
            ax.scatter(*zip(*o.searched), s=12, c="0.75", label="validated (search split)")
        front = o.published
        ax.errorbar(
            [r["latency_ratio"] for r in front], [r["accuracy_drop"] for r in front],
            yerr=[[r["accuracy_drop"] - r["accuracy_drop_low"] for r in front], [r["accuracy_drop_high"] - r["accuracy_drop"] for r in front]],
            fmt="o", ms=5, c="tab:blue", lw=0.8, label="published (test split, 95 %)",
        )  # fmt: skip
        for b, marker, colour in zip(o.baselines, "s^vD<>ph", plt.cm.tab10.colors[1:]):
            ax.scatter(
                [b["latency_ratio"]], [b["accuracy_drop"]], marker=marker, s=60, color=colour, label=b["baseline"]
            )
        ax.scatter([1.0], [0.0], marker="*", s=120, c="black", label="FP32")
        ax.axhline(LIMIT, ls="--", c="0.4", lw=0.8)
        ax.set_title(f"{o.run.model} on {o.target}")
        ax.set_xlabel("latency × FP32 (same run)")
        ax.set_ylabel("points below FP32")
        drops = [r["accuracy_drop"] for r in front] + [b["accuracy_drop"] for b in o.baselines]
        ax.set_ylim(min([-1.0] + [d - 0.5 for d in drops]), max([LIMIT * 3] + [d for d in drops if d < 10]) + 0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=ROOT / ".bench" / "results", help="where the runs' folders are kept (resumable)"
    )
    parser.add_argument("--only", nargs="*", help="models to run (default all, in the table's order)")
    parser.add_argument(
        "--report-only", action="store_true", help="write the document from the finished runs; run nothing"
    )
    parser.add_argument("--targets", nargs="*", choices=TARGETS, help="targets to run (default both)")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    if args.targets and args.out.resolve() == DOC.resolve() and set(args.targets) != set(TARGETS):
        parser.error("--targets writes a document of its own: give --out")
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [r for r in RUNS if not args.only or r.model in args.only]
    failures = []
    if not args.report_only:
        for run in runs:
            for target in args.targets or TARGETS:
                info = execute(run, target, args.work)
                if info["returncode"] != 0:
                    failures.append([run.model, target, info["command"], info["error"]])
    write(args, failures)


def invocation(args: argparse.Namespace) -> str:
    """The options this document was written with, as typed (the defaults left out)."""
    only = f" --only {' '.join(args.only)}" if args.only else ""
    targets = f" --targets {' '.join(args.targets)}" if args.targets else ""
    out = f" --out {shown_path(args.out)}" if args.out.resolve() != DOC.resolve() else ""
    return only + targets + out


def write(args: argparse.Namespace, failures: list[list[str]]) -> None:
    outcomes: dict[str, list[Outcome]] = {}
    pending = []
    partial = bool(args.only or args.targets) and args.out.resolve() != DOC.resolve()  # of these models and targets alone
    targets = args.targets if partial and args.targets else TARGETS
    for run in RUNS:
        if partial and args.only and run.model not in args.only:
            continue
        for target in targets:
            out = args.work / f"{run.model}-{target}"
            marker = out / "bench.json"
            if not marker.exists():
                pending.append([run.model, target, " ".join(command(run, target, Path("OUT") / out.name))])
                continue
            outcomes.setdefault(run.model, []).append(Outcome.read(run, target, out, json.loads(marker.read_text())))
    images = args.out.parent / "img"  # beside the document, which links img/NAME
    images.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    for model, found in outcomes.items():
        image = f"{args.out.stem.lower()}_{model}.png"
        plot(found, images / image)
        sections.append(model_section(found, image))
        summary += [summary_row(o) for o in found]
    every = [o for found in outcomes.values() for o in found]
    fingerprints = sorted({o.summary["fingerprint"] for o in every})
    commits = Counter(o.info.get("commit", "not recorded") for o in every)
    protocols = Counter(p for o in every if (p := final_pass_protocol(o.folder)) is not None)
    protocol = "; ".join(f"{p}: {n} run{'s' * (n > 1)}" for p, n in sorted(protocols.items())) or "no run published"
    columns = [
        "model", "target", "fastest published: latency × FP32 (Δ test [95 %])", "smallest published: size × FP32",
        "score", "best baseline within the limit (latency × FP32)", "faster than it", "the tool users run: faster than its INT8",
    ]  # fmt: skip
    title = ", ".join(args.only) if partial and args.only else "four model families"
    on = ", ".join(targets) if len(targets) == 1 else "two targets"
    doc = f"""# Results: {title}, {on}

Written by `python tools/bench_results.py{invocation(args)}` (each run below gives its `simq compile` command; OUT is
the runs' folder). Machine: {cpu_name()}, {os.cpu_count()} cores; 2 threads, batch 1.
Fingerprints: {"; ".join(f"`{f}`" for f in fingerprints) or "none yet"}.
Code (src/ as of): {"; ".join(f"commit {c} ({n} run{'s' * (n > 1)})" for c, n in sorted(commits.items())) or "none yet"} (each run says its own below).

One protocol for every run: `simq compile zoo:MODEL --target TARGET --budget B --time-limit M
--max-accuracy-drop {LIMIT:g}` at the default confidence. The search ranks candidates on the
validation split; a model is published within the limit when the one-sided upper bound of its
drop, paired per example against FP32 on validation, is at most {LIMIT:g} point (accuracy; models
with random weights: mean output cosine to FP32 in percent). The test split only confirms: its
paired drop and 95 % interval are shown, "beyond" where the interval lies wholly past the limit.
The final pass times every published model, FP32 and the target's baselines in rotation until
every interval is within its tolerance, with {timing_text()} in every timed ONNX
Runtime session (the rule, by run: {protocol}); latency is the median of paired ratios to FP32
with its 95 % interval. The best baseline is the fastest of FP32
and the target's baselines within the limit by the same rule (ort-cpu: plain `quantize_dynamic` /
`quantize_static`, and for transformers with a PyTorch source ORT's transformers optimizer on an
Optimum-style export, FP32 and with per-tensor `quantize_dynamic`: the recipe users run;
openvino-cpu: OpenVINO's default precision, NNCF INT8, NNCF INT8 weights — for transformers with
a PyTorch source on that Optimum-style export, whose attention OpenVINO fuses into its MHA kernel
(runs before commit 60e019d built them on SimQ's dynamo export, a slower bar: docs/MHA_FORM.md) —
and ORT's static QDQ model). The last column compares with the INT8 model of the tool users run ({" / ".join(TOOLS)})
whether or not its bound is within the limit, as each run's headline does.

## Summary

{table(columns, summary) if summary else "No run has finished yet."}

## What the runs show

(Computed from the table above.)

{chr(10).join(findings(every))}

The SimQ-NAS paper reports {PAPER}, with weight-sharing super-networks fine-tuned per task; these
runs are post-training on the given weights (`simq tune` first: docs/TUNE.md).

{"## Runs not finished" + chr(10) + chr(10) + table(["model", "target", "command"], pending) + chr(10) if pending else ""}
{"## Runs that failed" + chr(10) + chr(10) + table(["model", "target", "command", "error"], failures) + chr(10) if failures else ""}
## Per model

{chr(10).join(sections)}
"""
    args.out.write_text(doc)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
