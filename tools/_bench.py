"""Helpers shared by the benchmarks: same-run interleaved latency, paired accuracy, tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

THREADS = 2


def ort_session(model: ir.Model, threads: int = THREADS) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"])


def interleaved_latency(
    sessions: Mapping[str, ort.InferenceSession],
    feed: Mapping[str, np.ndarray],
    rounds: int = 7,
    per_round: int = 8,
    rewarm: int = 3,
) -> dict[str, list[float]]:
    """`interleaved_calls` for ONNX Runtime sessions on one feed."""
    return interleaved_calls({n: (lambda s=s: s.run(None, dict(feed))) for n, s in sessions.items()}, rounds, per_round, rewarm)


def interleaved_calls(
    calls: Mapping[str, Callable[[], object]],
    rounds: int = 7,
    per_round: int = 8,
    rewarm: int = 3,
) -> dict[str, list[float]]:
    """Per-call latencies (ms) of every session, measured in interleaved blocks.

    Each round visits every session in turn; after each switch a few untimed calls re-warm the
    caches (the first calls after a model switch run slow), then `per_round` calls are timed.
    The order rotates between rounds so that no model always follows the same one.
    """
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for call in calls.values():
        for _ in range(rewarm * 2):
            call()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = calls[name]
            for _ in range(rewarm):
                call()
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> float:
    """Interquartile range relative to the median."""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / statistics.median(values)


def predictions(session: ort.InferenceSession, batches: Iterable[tuple[dict[str, np.ndarray], np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max predictions and labels over a labelled dataset."""
    preds, labels = [], []
    for inputs, y in batches:
        preds.append(session.run(None, inputs)[0].argmax(-1))
        labels.append(y)
    return np.concatenate(preds), np.concatenate(labels)


def paired_delta(correct: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Accuracy difference in points and its 95 % half-interval, paired on the same examples."""
    d = correct.astype(float) - reference.astype(float)
    return 100 * d.mean(), 100 * 1.96 * d.std(ddof=1) / np.sqrt(len(d))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def openvino_call(path: str, feed: Mapping[str, np.ndarray], threads: int = THREADS) -> Callable[[], object]:
    """A latency-hinted, single-stream OpenVINO CPU inference of `path` on `feed`."""
    import openvino as ov

    core = ov.Core()
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
        "INFERENCE_PRECISION_HINT": "f32",  # else BF16-capable CPUs run "FP32" models in BF16
    }
    compiled = core.compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    inputs = dict(feed)
    return lambda: request.infer(inputs)


def cpu_name() -> str:
    """CPU model and the ISA extensions that matter for integer kernels, as the targets see them."""
    from simq.targets import TargetRegistry

    fingerprint = TargetRegistry().get("ort-cpu").fingerprint()
    return f"{fingerprint.cpu} ({', '.join(fingerprint.isa) or 'no SIMD flags found'})"
