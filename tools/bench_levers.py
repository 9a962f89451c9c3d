"""Each lowering lever on its own: SimQ's unpruned dynamic-INT8 minilm-tweets with one thing
changed at a time, timed against the recipe users run (ORT's transformers optimizer + per-tensor
dynamic INT8) in one process, two runs. Writes docs/LEVERS.md.

Levers: residual layer norms as Sum + LayerNormalization (what the ort-cpu target chooses where it
is faster) against ORT's SkipLayerNormalization; the residual Sum's bias handed to the dynamic-INT8
MatMul feeding it (`ResidualBiasIntoMatMulPass`) against a three-input Sum; per-tensor against per-channel INT8 weights; the
all-zero B zero point on MatMulInteger and QAttention left out; static INT8 (QDQ) for the
MatMuls instead of per-call activation quantization. The token-type rows folded into the position
table, a lever of this table until it moved into every model's cleanup (a Gather, an Add and a
DequantizeLinear less per run), is in "SimQ, as lowered here".

Usage: python tools/bench_levers.py [--rounds N] [--seq 64 128] [--out docs/LEVERS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, ratio_cell, shown_path, table, timing_text  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.data import timing_feed  # noqa: E402
from simq.passes import Pipeline, is_precision  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import Artifact, interleave, round_ratios  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 5


def _policy(pipeline: Pipeline, matmuls: str) -> dict:
    """Attention int8dyn; other units `matmuls` where offered, else int8dyn, else fp32."""
    config = {}
    for knob in pipeline.knobs:
        if is_precision(knob.name):
            want = "int8dyn" if "attention" in knob.name else matmuls
            config[knob.name] = want if want in knob.domain else ("int8dyn" if "int8dyn" in knob.domain else "fp32")
    return config


def _rewrite_weights(src: Path, dst: Path, per_tensor: bool) -> None:
    """The same model with the B zero points left out, and per-tensor weights if asked."""
    model = onnx.load(src)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("MatMulInteger", "QAttention"):
            continue
        weight = node.input[1]
        # SimQ names a weight's int8 data NAME.int8 and its scales NAME.scale (QuantizePass).
        scale = weight.removesuffix(".int8") + ".scale"
        if per_tensor:
            w = numpy_helper.to_array(inits[weight]).astype(np.float32) * numpy_helper.to_array(inits[scale])
            s = np.float32(np.abs(w).max() / 127)
            inits[weight].CopyFrom(numpy_helper.from_array(np.clip(np.round(w / s), -127, 127).astype(np.int8), weight))
            shape = (1,) if node.op_type == "QAttention" else ()
            inits[scale].CopyFrom(numpy_helper.from_array(np.full(shape, s, np.float32), scale))
        zero_point = 3 if node.op_type == "MatMulInteger" else 7
        if len(node.input) > zero_point:
            del node.input[zero_point]
    onnx.save(model, dst)


def _table(job, zoo: Zoo, rounds: int) -> list[list[str]]:
    """Every lever's model timed against the recipe at the job's shape: rows of the doc's table."""
    pipeline, target = job.pipeline, job.target
    kept = pipeline.replace(lowering=replace(pipeline.lowering, fusions=pipeline.lowering.fusions[:1], finishing=()))
    summed = pipeline.replace(lowering=replace(pipeline.lowering, finishing=()))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models: dict[str, Artifact] = {
            "FP32": target.lower(job.model, work / "fp32"),
            "the recipe": job.baselines["ORT optimizer + dynamic INT8"](work / "recipe"),
            "SimQ, as lowered here": target.lower(pipeline.build(_policy(pipeline, "int8dyn")), work / "simq"),
            "SkipLayerNormalization kept": target.lower(kept.build(_policy(kept, "int8dyn")), work / "kept"),
            "residual biases in the Sum": target.lower(summed.build(_policy(summed, "int8dyn")), work / "summed"),
            "static INT8 MatMuls (QDQ)": target.lower(pipeline.build(_policy(pipeline, "int8")), work / "static"),
        }
        for label, per_tensor in (("no B zero point", False), ("per-tensor weights, no zero point", True)):
            folder = work / label.replace(" ", "-").replace(",", "")
            folder.mkdir()
            _rewrite_weights(models["SimQ, as lowered here"].path, folder / "model.onnx", per_tensor)
            models[label] = target.lower(sir.load(folder / "model.onnx", clean=False), folder / "lowered")
        feed = timing_feed(zoo.data("minilm-tweets", "test").inputs, sir.input_domains(job.model), job.structure.signature)
        runs = []
        for _ in range(2):
            calls = {label: target.runner(artifact, feed) for label, artifact in models.items()}
            times = interleave(calls, rounds=rounds, per_round=PER_ROUND, rewarm=3)
            runs.append({label: round_ratios(times[label], times["the recipe"], PER_ROUND) for label in models})
    rows = []
    for label in models:
        first, second = runs[0][label], runs[1][label]
        rows.append([label, ratio_cell(first), f"{statistics.median(second):.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seq", type=int, nargs="+", default=[64, 128], help="sequence lengths, a table each")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "LEVERS.md")
    args = parser.parse_args()
    zoo, sections = Zoo(), []
    for seq in args.seq:
        job = prepare_job(JobSpec("zoo:minilm-tweets", seq_len=seq), zoo).job
        rows = _table(job, zoo, args.rounds)
        sections.append(f"## {seq} tokens\n\n{table(['model', '× the recipe [95 %]', 'run 2'], rows)}")
    body = "\n\n".join(sections)
    doc = f"""# Lowering levers, one at a time

Generated by `python tools/bench_levers.py --rounds {args.rounds} --seq {' '.join(map(str, args.seq))}{_out_flag(args.out)}` on {cpu_name()}, 2 threads, batch 1,
minilm-tweets at {' and '.join(map(str, args.seq))} tokens. Every model interleaved in one process, every session with
{timing_text()}; latency as the median of per-round ratios to the recipe (ORT's transformers optimizer
+ per-tensor dynamic INT8) with its 95 % interval, then a second run in turn (fresh sessions). Each row
changes one thing of SimQ's unpruned dynamic-INT8 model.

{body}
"""
    args.out.write_text(doc)
    print(doc)


def _out_flag(out: Path) -> str:
    default = ROOT / "docs" / "LEVERS.md"
    return "" if out.resolve() == default else f" --out {shown_path(out)}"


if __name__ == "__main__":
    main()
