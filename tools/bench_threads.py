"""What the second core buys, by width: the width and depth goals' models at 1 and 2 intra-op
threads, every session interleaved in one process. Writes docs/THREADS.md.

Pruning shrinks every dense layer's MACs, but at batch 1 a layer of a narrow model is a small
matrix product (64 x 384 x 192 at half width), which the runtime still splits over every thread
it has. Where that split costs about what it saves, the model at 2 threads keeps more of its time
than its MACs say, and the same model at 1 thread shows how much of the missing pay is the
second thread's. Models: the bar (the recipe users run on ort-cpu, NNCF INT8 on openvino-cpu),
SimQ's unpruned all-INT8 model, heads = FFN 75 % and 50 %, 4 of 6 layers, and both together, on
minilm-tweets at 64 and 128 tokens, batch 1.

Latency: per-round paired ratios (the median over rounds, with the distribution-free 95 % interval
of that median), then a second run in turn (fresh sessions).

Usage: python tools/bench_threads.py [--rounds N] [--seq 64 128] [--targets ort-cpu openvino-cpu] [--out docs/THREADS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, feed_for, ratio_cell, shown_path, table, timing_text  # noqa: E402
from bench_lowering import _grid_config  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.data import timing_feed  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import Artifact, TargetRegistry, interleave, round_ratios  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 5
THREADS = (2, 1)
BARS = {"ort-cpu": "ORT optimizer + dynamic INT8", "openvino-cpu": "NNCF INT8 (transformer)"}
UNPRUNED = "SimQ INT8, unpruned"
# (label, heads share, FFN share, layers dropped): the issue's width and depth goals' models.
GRID = (
    (UNPRUNED, 1.0, 1.0, 0),
    ("SimQ INT8, heads = FFN 75 %", 0.75, 0.75, 0),
    ("SimQ INT8, heads = FFN 50 %", 0.5, 0.5, 0),
    ("SimQ INT8, 4 of 6 layers", 1.0, 1.0, 2),
    ("SimQ INT8, heads = FFN 50 %, 4 of 6 layers", 0.5, 0.5, 2),
)


def _at_threads(artifact: Artifact, threads: int) -> Artifact:
    """The same files with `threads` in the thread setting its runtime reads from the artifact
    (OpenVINO compiles with the artifact's settings; ONNX Runtime with the target's threads)."""
    keys = ("intra_op_num_threads", "INFERENCE_NUM_THREADS")
    return replace(artifact, settings={k: str(threads) if k in keys else v for k, v in artifact.settings.items()})


def _section(target_name: str, seq: int, zoo: Zoo, rounds: int) -> tuple[str, dict[str, float]]:
    job = prepare_job(JobSpec("zoo:minilm-tweets", target=target_name, seq_len=seq), zoo).job
    pipeline, signature, bar = job.pipeline, dict(job.structure.signature), BARS[target_name]
    targets = {t: TargetRegistry().get(target_name, threads=t) for t in THREADS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models: dict[str, Artifact] = {bar: job.baselines[bar](work / "bar")}
        macs: dict[str, float] = {}
        for label, heads, ffn, drops in GRID:
            config = _grid_config(pipeline, heads, ffn, drops)
            models[label] = job.target.lower(pipeline.build(config), work / label.replace(" ", "-").replace(",", "").replace("%", ""))
            macs[label] = sir.analyze(pipeline.build(config, lower=False), signature).macs
        feed = timing_feed(zoo.data("minilm-tweets", "test").inputs, sir.input_domains(job.model), job.structure.signature)
        runs = []
        for run in range(2):
            print(f"{target_name}, {seq} tokens: run {run + 1}", file=sys.stderr, flush=True)
            calls = {(label, t): targets[t].runner(_at_threads(artifact, t), feed_for(artifact, feed)) for label, artifact in models.items() for t in THREADS}
            times = interleave(calls, rounds=rounds, per_round=PER_ROUND, rewarm=3)
            runs.append(times)
    rows, shares = [], {}
    for label in models:
        cells = [label, f"{macs[label] / macs[UNPRUNED]:.3f}" if label in macs else ""]
        for t in THREADS:
            first, second = (round_ratios(times[(label, t)], times[(UNPRUNED, t)], PER_ROUND) for times in runs)
            ms = statistics.median(runs[0][(label, t)])
            cells += [f"{ms:.2f}", f"{ratio_cell(first)} / {statistics.median(second):.3f}"]
            shares[(label, t)] = statistics.median(first)
        first, second = (round_ratios(times[(label, 1)], times[(label, 2)], PER_ROUND) for times in runs)
        cells.append(f"{ratio_cell(first)} / {statistics.median(second):.3f}")
        rows.append(cells)
    headers = ["model", "MACs × unpruned"]
    for t in THREADS:
        headers += [f"{t} thread{'s' if t > 1 else ''}: ms", f"{t} thread{'s' if t > 1 else ''}: × unpruned [95 %] / run 2"]
    headers.append("1 thread × 2 threads [95 %] / run 2")
    half, unpruned = "SimQ INT8, heads = FFN 50 %", UNPRUNED
    summary = (
        f"Heads = FFN 50 % keeps {macs[half] / macs[unpruned]:.0%} of the unpruned model's MACs and "
        f"{shares[(half, 2)]:.0%} of its time at 2 threads, {shares[(half, 1)]:.0%} at 1 thread; "
        f"4 of 6 layers {macs['SimQ INT8, 4 of 6 layers'] / macs[unpruned]:.0%} of the MACs, "
        f"{shares[('SimQ INT8, 4 of 6 layers', 2)]:.0%} / {shares[('SimQ INT8, 4 of 6 layers', 1)]:.0%} of the time."
    )
    return f"## {target_name}, {seq} tokens\n\n{table(headers, rows)}\n\n{summary}\n", shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seq", type=int, nargs="+", default=[64, 128], help="sequence lengths, a table each")
    parser.add_argument("--targets", nargs="+", choices=sorted(BARS), default=["ort-cpu", "openvino-cpu"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "THREADS.md")
    args = parser.parse_args()
    zoo = Zoo()
    sections = [_section(target, seq, zoo, args.rounds)[0] for target in args.targets for seq in args.seq]
    fingerprints = ", ".join(f"`{TargetRegistry().get(t).fingerprint().key()}`" for t in args.targets)
    out_flag = "" if args.out.resolve() == ROOT / "docs" / "THREADS.md" else f" --out {shown_path(args.out)}"
    doc = f"""# What the second core buys, by width

Generated by `python tools/bench_threads.py --rounds {args.rounds} --seq {" ".join(map(str, args.seq))} --targets {" ".join(args.targets)}{out_flag}` on {cpu_name()}
(fingerprints {fingerprints}), batch 1, minilm-tweets. Every model at 1 and at 2 intra-op threads
(inter-op 1), all of them interleaved in one process, every ONNX Runtime session with {timing_text()};
the median of per-round ratios with its distribution-free 95 % interval, then the median of a
second run in turn (fresh sessions). "× unpruned": against SimQ's unpruned all-INT8 model at the
same thread count. "1 thread × 2 threads": a model's own time at 1 thread over its time at 2,
what the second thread buys it. SimQ's models are built as the search builds them (every unit
INT8 where the target offers it, the middle layers dropped), without accuracy: the question here is
where the time goes.

{chr(10).join(sections)}"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
