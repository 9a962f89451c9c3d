"""Finished runs' published models against the recipe users already run, at 64 and 128 tokens.

A `simq compile` run on zoo:minilm-tweets times its models against FP32 at one shape (batch 1, 64
tokens by default) and names its verdict against the fastest baseline within the limit. This
re-times every published model of the given runs directly against the recipe (ORT's transformers
optimizer on the TorchScript export, then per-tensor `quantize_dynamic`: the baseline
`simq compile` builds under that name), paired and interleaved with the final pass's protocol
(`simq.targets.timed_ratio`, every session with the ort-cpu target's timing settings), at 64 and at 128 tokens,
each length in two fresh processes. Then, per run: the fastest model within the limit (chosen
on validation, as the run chose it) and the fastest unpruned one, as speed-ups over the recipe.
Writes docs/VS_RECIPE.md (or --out).

Usage: python tools/bench_vs_recipe.py OUT [OUT ...] [--limit 1] [--work DIR] [--out DOC]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import artifact_from, artifact_record, cpu_name, fastest_within, run_name, table, timing_text, tolerance_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BAR = "ORT optimizer + dynamic INT8"
LENGTHS = (64, 128)
PROCESSES = 2


def build(work: Path) -> str:
    """Lower the recipe into WORK/recipe and save a feed per length; the fingerprint's key."""
    import numpy as np

    from simq import ir as sir
    from simq.data import timing_feed
    from simq.search import JobSpec, prepare_job
    from simq.zoo import Zoo

    zoo = Zoo()
    job = prepare_job(JobSpec("zoo:minilm-tweets", cache_dir=zoo.cache_dir), zoo, status=lambda s: print(f"  {s}", file=sys.stderr)).job
    recipe = job.baselines[BAR](work / "recipe")
    (work / "recipe.json").write_text(json.dumps(artifact_record(recipe)))
    inputs = zoo.data("minilm-tweets", "test").inputs
    for length in LENGTHS:
        feed = timing_feed(inputs, sir.input_domains(job.model), {name: (1, length) for name in inputs})
        np.savez(work / f"feed-{length}.npz", **feed)
    return job.target.fingerprint().key()


def child(work: Path, outs: list[Path]) -> dict[str, dict[str, list[float]]]:
    """In this fresh process: per length, every published model's ratio to the recipe with its
    95 % interval, keyed ``run/id`` (the run's `run_name`)."""
    import numpy as np

    from simq.targets import Artifact, TargetRegistry, timed_ratio

    target = TargetRegistry().get("ort-cpu", threads=2)
    recipe = artifact_from(json.loads((work / "recipe.json").read_text()))
    ratios: dict[str, dict[str, list[float]]] = {}
    for length in LENGTHS:
        feed = dict(np.load(work / f"feed-{length}.npz"))
        for out in outs:
            for folder in sorted((out / "pareto").iterdir(), key=lambda p: int(p.name)):
                r = timed_ratio(target.runner(recipe, feed), target.runner(Artifact.load_index(folder), feed))
                ratios.setdefault(str(length), {})[f"{run_name(out, outs)}/{folder.name}"] = [r.ratio, r.low, r.high]
                print(f"  {length} tokens: {run_name(out, outs)} #{folder.name} {r.ratio:.3f}x the recipe", file=sys.stderr, flush=True)
    return ratios


def _versus(ratio: float, low: float | None = None, high: float | None = None) -> str:
    """A latency ratio to the recipe in words: "2.23x faster (2.17–2.30x)" or "1.82x slower (...)"."""
    if ratio <= 1:
        return f"{1 / ratio:.2f}x faster" + (f" ({1 / high:.2f}–{1 / low:.2f}x)" if low is not None else "")
    return f"{ratio:.2f}x slower" + (f" ({low:.2f}–{high:.2f}x)" if low is not None else "")


def _unpruned(config: str) -> bool:
    return "blocks dropped 0/" in config and "heads 100%" in config and "FFN 100%" in config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", type=Path, nargs="+", help="--out folders of finished runs on zoo:minilm-tweets (ort-cpu)")
    parser.add_argument("--limit", type=float, default=1.0, help="the runs' --max-accuracy-drop")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "vs-recipe")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "VS_RECIPE.md", help="the document to write")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.work, args.outs)))
        return
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    fingerprint = build(args.work)
    runs = []
    for p in range(PROCESSES):
        print(f"fresh process {p + 1} of {PROCESSES}", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, __file__, *map(str, args.outs), "--work", str(args.work), "--child"],
                              stdout=subprocess.PIPE, text=True, check=True)  # fmt: skip
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    sections, verdicts, worst = [], [], 0.0
    cell = lambda r: f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]"  # noqa: E731
    for out in args.outs:
        name = run_name(out, args.outs)
        summary = json.loads((out / "summary.json").read_text())
        published = [r for r in summary["rows"] if r["kind"] == "candidate" and r.get("artifact")]
        rows = []
        for row in published:
            key = f"{name}/{row['id']}"
            cells = [row["id"], row["config"], f"{row['search_accuracy_bound']:+.2f}", f"{row['accuracy_drop']:+.2f} [{row['accuracy_drop_low']:+.2f}, {row['accuracy_drop_high']:+.2f}]"]
            for length in LENGTHS:
                first, second = (run[str(length)][key] for run in runs)
                worst = max(worst, abs(second[0] / first[0] - 1))
                cells.append(f"{cell(first)} / {second[0]:.3f}")
            rows.append(cells)
        sections.append(
            f"### {name}\n\n{summary.get('headline') or ''}\n\n"
            + table(["id", "model", "validation bound (drop)", "test drop [95 %]", *(f"{n} tokens: × the recipe [95 %] / process 2" for n in LENGTHS)], rows)
        )
        best = fastest_within(summary, args.limit)
        unpruned = min((r for r in published if _unpruned(r["config"]) and r["search_accuracy_bound"] <= args.limit), key=lambda r: r["latency_ratio"], default=None)
        for what, row in (("fastest within the limit", best), ("fastest unpruned within it", unpruned)):
            if row is None:
                verdicts.append(f"- {name}, {what}: none.")
                continue
            key = f"{name}/{row['id']}"
            speeds = "; ".join(
                f"{n} tokens {_versus(*runs[0][str(n)][key])}, process 2 {_versus(runs[1][str(n)][key][0])}" for n in LENGTHS
            )
            verdicts.append(f"- {name}, {what}: #{row['id']} (validation bound {row['search_accuracy_bound']:+.2f}, test {row['accuracy_drop']:+.2f}), against the recipe: {speeds}.")
    command = " ".join(run_name(o, args.outs) for o in args.outs)
    doc = f"""# Published models against the recipe, at 64 and 128 tokens

Generated by `python tools/bench_vs_recipe.py {command}` on {cpu_name()}, 2 threads, batch 1
(fingerprint `{fingerprint}`).

Every published model of the runs below (`simq compile zoo:minilm-tweets`, ort-cpu) timed
directly against the recipe users already run ({BAR}: ORT's transformers optimizer on the
TorchScript export, then per-tensor `quantize_dynamic`, as `simq compile` builds it), paired and
interleaved until the 95 % interval of the median per-round ratio is within {tolerance_text()},
every session with {timing_text()}; at 64 and at 128 tokens (the test split's tweets
extended to that length), each length in {PROCESSES} fresh processes. Below 1: faster than the
recipe. Accuracy as the run published it: the paired bound on validation its verdict judges by,
the drop on test with its 95 % interval (points below FP32).

{chr(10).join(verdicts)}

Largest difference between the two processes' ratios: {worst:.1%}.

{(chr(10) * 2).join(sections)}
"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
