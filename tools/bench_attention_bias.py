"""The attention bias rules on their own: SimQ's unpruned dynamic-INT8 ViT and CLIP with and
without them, timed against the dynamic-INT8 baselines users run, in one process, two runs.
Writes docs/ATTENTION_BIAS.md.

Without the rules, a fused Attention keeps the additive bias the export built: zero for ViT (no
padding mask), the causal and padding masks together for CLIP's text tower. ONNX Runtime
quantizes no Attention with a bias into QAttention, so those attentions stay FP32. With them, the
bias is dropped (`AttentionZeroBias`) or becomes ``mask_index`` + ``unidirectional``
(`AttentionMaskIndex`), and every attention runs as QAttention.

Usage: python tools/bench_attention_bias.py [--models vit-base clip-small] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, session_options, table, timing_text  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.data import timing_feed  # noqa: E402
from simq.passes import Pipeline, is_precision  # noqa: E402
from simq.passes.fuse import OrtFusionPass  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import Artifact, interleave, median_interval, round_ratios  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 3
WITH, WITHOUT = "SimQ, the attention bias rules on", "SimQ, the attention bias rules off"


def _int8dyn(pipeline: Pipeline) -> dict:
    """Every unit dynamic INT8 where offered (else FP32): what the rules change is which units
    are offered, the attentions."""
    return {k.name: "int8dyn" if "int8dyn" in k.domain else "fp32" for k in pipeline.knobs if is_precision(k.name)}


def _outputs(artifact: Artifact, feed: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(str(artifact.path), session_options(2), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rows(name: str, zoo: Zoo, rounds: int) -> tuple[list[list[str]], str]:
    """The model's table rows (latency × the fastest baseline, size, fidelity) and its reference."""
    job = prepare_job(JobSpec(f"zoo:{name}"), zoo).job
    pipeline, target = job.pipeline, job.target
    fusions = pipeline.lowering.fusions
    off = pipeline.replace(lowering=replace(pipeline.lowering, fusions=(OrtFusionPass(job.structure.signature, attention_bias=False), *fusions[1:])))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models: dict[str, Artifact] = {"FP32": target.lower(job.model, work / "fp32")}
        for baseline, build in job.baselines.items():
            if "dynamic INT8" in baseline:
                models[baseline] = build(work / baseline.replace(" ", "-"))
        models[WITH] = target.lower(pipeline.build(_int8dyn(pipeline)), work / "on")
        models[WITHOUT] = target.lower(off.build(_int8dyn(off)), work / "off")
        feed = timing_feed(zoo.data(name, "test").inputs, sir.input_domains(job.model), job.structure.signature)
        check = {k: v[:8] for k, v in zoo.data(name, "test").inputs.items()}
        reference = _outputs(models["FP32"], check)
        fidelity = {label: min(_cosine(o, r) for o, r in zip(_outputs(a, check), reference)) for label, a in models.items()}
        baselines = [label for label in models if label not in ("FP32", WITH, WITHOUT)]
        runs = []
        for _ in range(2):
            calls = {label: target.runner(artifact, feed) for label, artifact in models.items()}
            times = interleave(calls, rounds=rounds, per_round=PER_ROUND, rewarm=3)
            runs.append({label: round_ratios(times[label], times["FP32"], PER_ROUND) for label in models})
        fastest = min(baselines, key=lambda b: statistics.median(runs[0][b]))
        for run in runs:
            bar = run[fastest]
            for label in list(run):
                run[label + " /bar"] = [x / y for x, y in zip(run[label], bar)]
        rows = []
        for label, artifact in models.items():
            cells = [label, f"{artifact.size_bytes / models['FP32'].size_bytes:.2f}", f"{fidelity[label]:.4f}"]
            for suffix in ("", " /bar"):
                first, second = runs[0][label + suffix], runs[1][label + suffix]
                low, high = median_interval(first)
                cells.append(f"{statistics.median(first):.3f} [{low:.3f}, {high:.3f}] / {statistics.median(second):.3f}")
            rows.append(cells)
    return rows, fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit-base", "clip-small"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ATTENTION_BIAS.md")
    args = parser.parse_args()
    zoo, sections = Zoo(), []
    for name in args.models:
        rows, fastest = _rows(name, zoo, args.rounds)
        columns = ["model", "size × FP32", "fidelity (lowest output cosine to FP32, 8 test inputs)",
                   "× FP32 [95 %] / run 2", f"× {fastest} [95 %] / run 2"]  # fmt: skip
        sections.append(f"## {name}\n\nThe fastest dynamic-INT8 baseline in the first run: {fastest}.\n\n{table(columns, rows)}")
    models = " ".join(args.models)
    doc = f"""# The attention bias rules, on their own

Generated by `python tools/bench_attention_bias.py --models {models} --rounds {args.rounds}` on {cpu_name()},
2 threads, batch 1, each model at its zoo signature. SimQ's unpruned model with every unit in
dynamic INT8 where the target offers it, lowered as ort-cpu lowers it, with the attention bias
rules (`simq.passes.fuse.attention_bias`) and without them (each Attention as onnxscript fuses it,
its additive bias kept, so ONNX Runtime cannot quantize it and it stays FP32), beside FP32 and the
target's dynamic-INT8 baselines (the recipe: ORT's transformers optimizer, or SimQ's own fusion
where the optimizer has no PyTorch source to export, + per-tensor `quantize_dynamic`). Every
model interleaved in one process, every session with {timing_text()}; the median of per-round
ratios with its 95 % interval, then a second run in turn (fresh sessions). Random weights: fidelity
is the output cosine to FP32, not accuracy.

{(chr(10) * 2).join(sections)}
"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
