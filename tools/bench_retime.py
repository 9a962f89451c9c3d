"""Do a run's latencies hold? Re-time every published model of a finished `simq compile` run
against FP32 in two fresh processes, as its final pass did, and compare the ratios. Writes
docs/RETIME.md.

Each fresh process lowers the run's FP32 model (its zoo model or the ONNX its manifest names), then
times every published folder against it with the same adaptive paired protocol as the final pass
(`simq.targets.timed_ratios`: the models in rotation until every interval is within the final
pass's tolerance), every session with the ort-cpu target's timing settings. With
``--tolerance`` and ``--max-rounds`` it re-times with a narrower interval than the final pass's, and with ``--processes`` in more fresh
processes: whether the processes then agree with each other tells whether more rounds would
bring a re-time closer to the run, or whether each process's ratios sit apart.

Usage: python tools/bench_retime.py OUT [--model zoo:minilm-tweets] [--processes 2]
       [--tolerance 0.03] [--max-rounds 40] [--doc docs/RETIME.md]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.progress import track

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, final_pass_protocol, shown_path, table, timing_text, tolerance_text  # noqa: E402

from simq.targets import MAX_ROUNDS, TOLERANCE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _folders(out: Path) -> list[Path]:
    """The run's published folders, by id."""
    return sorted((p for p in (out / "pareto").iterdir() if (p / "manifest.json").is_file()), key=lambda p: int(p.name))


def published(out: Path, model: str, work: Path) -> tuple[object, object, dict, dict]:
    """A finished run's timing setup: (its target, the FP32 reference lowered into `work`, the
    timing feed at the run's shape, every published artifact by id)."""
    import numpy as np

    from simq import ir as sir
    from simq.data import timing_feed
    from simq.targets import Artifact, TargetRegistry
    from simq.zoo import Zoo

    folders = _folders(out)
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    target = TargetRegistry().get(manifest["target"], threads=int(manifest["fingerprint"]["threads"]))
    zoo = Zoo()
    fp32 = sir.load(model, zoo=zoo)
    shapes = {name: tuple(shape) for name, shape in manifest["timing"]["inputs"].items()}
    name = sir.zoo_name(model)
    inputs = zoo.data(name, "test").inputs if name else {k: np.zeros(v, np.int64) for k, v in shapes.items()}
    feed = timing_feed(inputs, sir.input_domains(fp32), shapes)
    return target, target.lower(fp32, work), feed, {folder.name: Artifact.load_index(folder) for folder in folders}


def run_ratios(out: Path) -> dict[str, float]:
    """The final pass's ratio to FP32 of every published model, by id."""
    return {p.name: json.loads((p / "manifest.json").read_text())["final"]["latency_ratio"] for p in _folders(out)}


def bar(out: Path) -> tuple[str, float] | None:
    """The baseline the run's headline compares against and its ratio to FP32 in the run's final
    pass (None where it is FP32 or there is none). Summaries written before they named it
    (``"bar"``) name it in the headline only."""
    summary = json.loads((out / "summary.json").read_text())
    ratios = {row["baseline"]: row["latency_ratio"] for row in summary["rows"] if row["kind"] == "baseline"}
    named = re.match(r"Best baseline [^:]*: (.+?) at [0-9.]+x FP32", summary.get("headline") or "")
    name = summary["bar"] if "bar" in summary else named and named.group(1)
    return (name, ratios[name]) if name in ratios else None


def child(out: Path, model: str, tolerance: float, max_rounds: int) -> dict:
    """In this process: every published folder's ratio to FP32 and its interval's half width, by
    id (the headline's baseline, rebuilt from the baseline cache, as ``bar``), and FP32's median
    latency over all rounds."""
    from simq.search import JobSpec, prepare_job
    from simq.targets import timed_ratios
    from simq.zoo import Zoo

    with tempfile.TemporaryDirectory() as tmp:
        target, reference, feed, artifacts = published(out, model, Path(tmp))
        if (named := bar(out)) is not None:
            artifacts["bar"] = prepare_job(JobSpec(model=model), Zoo()).job.baselines[named[0]](Path(tmp) / "bar")
        runners = {i: target.runner(artifact, feed) for i, artifact in artifacts.items()}
        timed = timed_ratios(target.runner(reference, feed), runners, tolerance=tolerance, max_rounds=max_rounds)
        return {
            "ratios": {i: [paired.ratio, paired.half_width] for i, paired in timed.items()},
            "fp32_ms": statistics.median(paired.reference_ms for paired in timed.values()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the --out folder of a finished simq compile run")
    parser.add_argument("--model", default="zoo:minilm-tweets", help="the model the run compiled")
    parser.add_argument("--processes", type=int, default=2, help="fresh processes to re-time in (default 2)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help=f"stop once every interval is within ± this (default the final pass's {TOLERANCE})")
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS, help=f"paired rounds at most per model (default the final pass's {MAX_ROUNDS})")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "RETIME.md", help="where to write the table (default docs/RETIME.md)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.out, args.model, args.tolerance, args.max_rounds)))
        return
    flags = ["--model", args.model, "--tolerance", str(args.tolerance), "--max-rounds", str(args.max_rounds)]
    runs = []
    for _ in track(range(args.processes), description="fresh processes"):
        done = subprocess.run([sys.executable, __file__, str(args.out), *flags, "--child"], check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    in_run = run_ratios(args.out)
    rows, worst, apart = [], 0.0, 0.0
    for i, original in in_run.items():
        again = [run["ratios"][i][0] for run in runs]
        worst = max([worst] + [abs(ratio / original - 1) for ratio in again])
        apart = max(apart, max(again) / min(again) - 1)
        cells = [f"{ratio:.3f} ({ratio / original - 1:+.1%}, ±{run['ratios'][i][1]:.1%})" for ratio, run in zip(again, runs)]
        rows.append([i, f"{original:.3f}", *cells])
    rows.append(["FP32 ms", "", *(f"{run['fp32_ms']:.2f}" for run in runs)])
    shifts = [statistics.median(run["ratios"][i][0] / ratio - 1 for i, ratio in in_run.items()) for run in runs]
    rows.append(["median difference", "", *(f"{shift:+.1%}" for shift in shifts)])
    speedups = _speedups(args.out, in_run, runs)
    command = " ".join(["python tools/bench_retime.py", str(args.out), *_changed(parser, args)])
    doc = f"""# Re-timing a published front

Generated by `{command}` on {cpu_name()}, 2 threads: every published model of
that run re-timed against FP32 in {args.processes} fresh processes, with the final pass's protocol (the
models in rotation, blocks of paired rounds until the 95 % interval of every ratio is within
{tolerance_text(args.tolerance, args.max_rounds)}; the run's final pass: {final_pass_protocol(args.out)}), {timing_text()}.
Each cell: the ratio, its difference from the run's, and the half width of its 95 % interval; the
last rows: FP32's median call in that process, and the median of its models' differences.

{table(["model", "ratio in the run", *(f"fresh process {k + 1}" for k in range(args.processes))], rows)}

Largest difference from the run's own ratio: {worst:.1%}. Largest spread of one model's ratio
among the fresh processes (largest over smallest, minus 1): {apart:.1%}.
{speedups}"""
    args.doc.write_text(doc)
    print(doc)


def _speedups(out: Path, in_run: dict[str, float], runs: list[dict]) -> str:
    """The doc's section on the speed-up over the headline's baseline (timed in the same rotation,
    so FP32 divides out), in the run (`in_run`: its ratios to FP32) and in each fresh process;
    empty without a baseline."""
    if (named := bar(out)) is None:
        return ""
    name, bar_in_run = named
    rows, worst = [], 0.0
    for i, original in in_run.items():
        run_speedup = bar_in_run / original
        again = [run["ratios"]["bar"][0] / run["ratios"][i][0] for run in runs]
        worst = max([worst] + [abs(speedup / run_speedup - 1) for speedup in again])
        rows.append([i, f"{run_speedup:.2f}x", *(f"{speedup:.2f}x ({speedup / run_speedup - 1:+.1%})" for speedup in again)])
    headers = ["model", "in the run", *(f"fresh process {k + 1}" for k in range(len(runs)))]
    return f"""
## Speed-up over {name}, the headline's baseline

Rebuilt from the baseline cache and timed in the same rotation: its ratio to FP32 over the model's.

{table(headers, rows)}

Largest difference from the run's own speed-up: {worst:.1%}.
"""


def _changed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The command line's options that differ from their defaults, to name in the doc."""
    shown = []
    for name in ("model", "processes", "tolerance", "max_rounds", "doc"):
        value = getattr(args, name)
        if value != parser.get_default(name):
            shown += [f"--{name.replace('_', '-')}", str(shown_path(value) if isinstance(value, Path) else value)]
    return shown


if __name__ == "__main__":
    main()
