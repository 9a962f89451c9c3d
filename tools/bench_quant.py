"""Quantization benchmark: accuracy, fidelity, latency on both runtimes and size, per policy.

Writes docs/QUANT.md for minilm-tweets (real weights: accuracy) and bert-base (random weights:
fidelity, speed, size). Latency: batch 1, 2 threads, each runtime's models interleaved with its
own FP32 model in the same run; ratios of medians.

Usage: python tools/bench_quant.py [--cache-dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import (  # noqa: E402
    cpu_name,
    interleaved_calls,
    median,
    openvino_call,
    ort_session,
    paired_delta,
    predictions,
    session_options,
    table,
)

import simq.ir as sir  # noqa: E402
from simq.passes import Pipeline  # noqa: E402
from simq.passes.quant import QuantizePass, calibrate, nearest, quant_knob, quantize, sensitivity  # noqa: E402
from simq.passes.quant._sensitivity import output_error  # noqa: E402
from simq.targets import TargetRegistry  # noqa: E402
from simq.targets.ort_cpu import ort_dynamic, ort_static  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=True)


def size_mb(model: ir.Model) -> float:
    return len(ir.to_proto(model).SerializeToString()) / 1e6


def policies(structure: sir.Structure, scores: dict[str, float]) -> dict[str, dict[str, str]]:
    knobs = QuantizePass.knobs(structure)
    weighted_matmul = {q.node for q in structure.quantizable if q.kind == "weighted" and q.op_type == "MatMul"}
    ffn = {n for layer in structure.layers for n in (layer.ffn.up.node, layer.ffn.down.node)}
    return {
        "ours INT8 everywhere": {k.name: "int8" for k in knobs},
        "ours dynamic INT8 on weighted MatMuls (unfused)": {k.name: nearest(k.domain, "int8dyn") for k in knobs if k.name[len("quant.") :] in weighted_matmul},
        "ours INT8 weighted MatMuls only": {quant_knob(n): "int8" for n in weighted_matmul},
        "ours INT4 weights on the FFNs": {quant_knob(n): "int4w" for n in ffn},
    }


def guided(order: list[str], n: int) -> dict[str, str]:
    """The `n` least sensitive nodes in INT8."""
    return {quant_knob(node): "int8" for node in order[:n]}


def bisect_budget(order: list[str], within_budget) -> int:
    """Largest n (nodes quantized, least sensitive first) whose policy stays within budget."""
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if within_budget(guided(order, mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo


def run_model(zoo: Zoo, name: str, quick: bool, rounds: int) -> tuple[str, list[str]]:
    path = zoo.path(name)
    entry = zoo.entry(name)
    base = sir.load(path)
    structure = sir.analyze(base, dict(entry.signature))
    calibration_batches = [x for x, _ in zoo.data(name, "calibration").batches(16)]
    start = time.perf_counter()
    calibration = calibrate(base, structure, calibration_batches)
    calibration_time = time.perf_counter() - start
    start = time.perf_counter()
    scores = sensitivity(base, structure, calibration, calibration_batches[:1 if name == "bert-base" else 2])
    sensitivity_time = time.perf_counter() - start
    order = sorted(scores, key=scores.get)
    notes = [
        f"{name}: calibration over {sum(len(next(iter(b.values()))) for b in calibration_batches)} examples took "
        f"{calibration_time:.1f} s; sensitivity of {len(scores)} nodes took {sensitivity_time:.0f} s."
    ]

    test = zoo.data(name, "test")
    validation = zoo.data(name, "validation")
    if quick:
        test = type(test)({k: v[:256] for k, v in test.inputs.items()}, None if test.labels is None else test.labels[:256])
    fidelity_feeds = [x for x, _ in test.batches(64)][: 2 if name == "bert-base" else None]
    reference_outputs = [ort_session(base).run(None, f) for f in fidelity_feeds]

    def fidelity(model: ir.Model) -> float:
        session = ort_session(model)
        return 1 - np.mean([output_error(r, session.run(None, f)) for r, f in zip(reference_outputs, fidelity_feeds)])

    models: dict[str, ir.Model] = {"FP32": base}
    start = time.perf_counter()
    models["ORT quantize_dynamic"] = ort_dynamic(base)
    models["ORT quantize_static, QDQ everywhere"] = ort_static(base, calibration_batches)
    baseline_time = time.perf_counter() - start
    # What simq compile emits for ort-cpu: fused into ORT's kernels, every fused attention one
    # QAttention, the other MatMuls dynamic INT8, embeddings INT8 (OpenVINO has no such kernels).
    target = TargetRegistry().get("ort-cpu")
    pipeline = Pipeline(base, structure, calibration=calibration, calibration_batches=calibration_batches,
                        supports=target.supports, lowering=target.lowering(dict(entry.signature)))  # fmt: skip
    models["ours dynamic INT8, fused for ORT (QAttention)"] = pipeline.build(
        {k.name: nearest(k.domain, "int8dyn") for k in pipeline.knobs if k.name.startswith("quant.")}
    )
    apply_times = []
    for label, policy in policies(structure, scores).items():
        start = time.perf_counter()
        models[label] = quantize(base.clone(), structure, policy, calibration)
        apply_times.append(time.perf_counter() - start)

    if test.labels is not None:
        def correct(model: ir.Model, dataset) -> np.ndarray:
            pred, labels = predictions(ort_session(model), dataset.batches(128))
            return pred == labels

        validation_reference = correct(base, validation)
        budget = lambda policy: paired_delta(  # noqa: E731
            correct(quantize(base.clone(), structure, policy, calibration), validation), validation_reference
        )[0] >= -0.5
        # Half the 1-point budget on validation leaves room for the validation-to-test noise.
        rule = "least sensitive nodes in INT8 while validation accuracy stays within 0.5 point"
    else:
        budget = lambda policy: fidelity(quantize(base.clone(), structure, policy, calibration)) >= 0.999  # noqa: E731
        rule = "least sensitive nodes in INT8 while output cosine to FP32 stays >= 0.999"
    n = bisect_budget(order, budget)
    guided_label = f"ours sensitivity-guided ({n} of {len(order)} nodes INT8)"
    models[guided_label] = quantize(base.clone(), structure, guided(order, n), calibration)
    notes.append(f"{name}: sensitivity-guided policy = {rule}.")
    if n == len(order):
        notes.append(
            f"{name}: every node fit the budget, so the sensitivity-guided model is the INT8-everywhere model; "
            "the difference between their two latency ratios is measurement noise."
        )
    notes.append(
        f"{name}: applying a policy takes {median(apply_times):.2f} s (no re-calibration); the two ORT baselines "
        f"together took {baseline_time:.0f} s."
    )

    rows = {}
    reference = None
    if test.labels is not None:
        reference = predictions(ort_session(base), test.batches(128))
        reference = reference[0] == reference[1]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {label: str(sir.save(m, Path(tmp) / f"{i}.onnx")) for i, (label, m) in enumerate(models.items())}
        feed = {k: v[:1] for k, v in next(test.batches(1))[0].items()}
        ort_calls = {}
        for label, p in paths.items():
            session = ort.InferenceSession(p, session_options(), providers=["CPUExecutionProvider"])
            ort_calls[label] = (lambda s=session: s.run(None, feed))
        console.print(f"{name}: ONNX Runtime latency, {len(ort_calls)} models interleaved")
        ort_times = interleaved_calls(ort_calls, rounds=rounds)
        ov_calls, ov_errors = {}, {}
        for label, p in paths.items():
            try:
                ov_calls[label] = openvino_call(p, feed)
            except Exception as e:  # a runtime rejecting an artifact is a result here
                ov_errors[label] = type(e).__name__
        console.print(f"{name}: OpenVINO latency, {len(ov_calls)} models interleaved")
        ov_times = interleaved_calls(ov_calls, rounds=rounds)

    for label, model in models.items():
        accuracy = ""
        if reference is not None:
            pred, labels = predictions(ort_session(model), test.batches(128))
            delta, half = paired_delta(pred == labels, reference)
            accuracy = f"{delta:+.1f} ± {half:.1f}"
        ov = f"{median(ov_times[label]) / median(ov_times['FP32']):.2f}" if label in ov_times else f"rejected ({ov_errors[label]})"
        rows[label] = [
            label,
            accuracy if reference is not None else "n/a (random weights)",
            f"{fidelity(model):.4f}",
            f"{median(ort_times[label]) / median(ort_times['FP32']):.2f}",
            ov,
            f"{size_mb(model):.1f}",
        ]
    headers = ["model / policy", "accuracy Δ (pts)", "output cosine", "ORT latency", "OpenVINO latency", "size MB"]
    fp32_ms = f"FP32 medians: ONNX Runtime {median(ort_times['FP32']):.1f} ms, OpenVINO {median(ov_times['FP32']):.1f} ms."
    return table(headers, rows.values()) + "\n\n" + fp32_ms, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "QUANT.md")
    args = parser.parse_args()
    zoo = Zoo(args.cache_dir)
    rounds = 3 if args.quick else 9
    sections, notes = [], []
    for name, title in (("minilm-tweets", "minilm-tweets (real weights, 64 tokens)"), ("bert-base", "bert-base (random weights, 128 tokens)")):
        text, model_notes = run_model(zoo, name, args.quick, rounds)
        sections.append(f"## {title}\n\n{text}")
        notes += model_notes
    body = "\n\n".join(sections)
    note_lines = "\n".join(f"- {n}" for n in notes)
    doc = f"""# Quantization

Written by `python tools/bench_quant.py`{" --quick" if args.quick else ""}. Machine: {cpu_name()}, {os.cpu_count()} cores;
ONNX Runtime {ort.__version__} (CPU provider, full optimisation); OpenVINO CPU (latency hint, one stream,
FP32 inference precision: on CPUs with AVX512-BF16 OpenVINO would otherwise run FP32 models in BF16);
2 threads, batch 1. Accuracy Δ is paired on the test split against FP32 with
its 95 % interval; output cosine is 1 - the mean per-example cosine distance of the outputs to FP32;
latency ratios are to FP32 on the same runtime in the same run ({rounds} interleaved rounds); size is the
serialised ONNX file.

{body}

"Ours INT8 everywhere" means every node SimQ treats as quantizable (MatMul, Gemm, Conv, and
embedding Gathers) in static INT8; "dynamic INT8" quantizes activations at run time
(DynamicQuantizeLinear + MatMulInteger, which ONNX Runtime fuses into DynamicQuantizeMatMul);
"fused for ORT" is what `simq compile` emits for ort-cpu (ORT's Attention, SkipLayerNormalization
and BiasGelu kernels, each attention one QAttention), which OpenVINO cannot run. Static INT8 ranges
are min/max or a percentile per tensor, whichever quantizes the calibration data with less error.
docs/LOWERING.md compares these with ORT's fused + dynamic INT8 recipe and with NNCF. ONNX
Runtime's `quantize_static` also puts Q/DQ on every other op it supports (the residual Adds of a
transformer among them, where SimQ's INT8 regions stop: one operand of those Adds stays float), and that version loses most of the real MiniLM's accuracy
(table above).
Which of those extra ops does the damage is not isolated here; the per-node choice is the point. INT4 weights use the standard blocked
`DequantizeLinear` (opset 21, block 32), which ONNX Runtime fuses into MatMulNBits and OpenVINO
runs as well; at batch 1 on this CPU they save size but little time.

Notes:
{note_lines}
"""
    args.out.write_text(doc)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
