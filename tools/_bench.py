"""Helpers shared by the benchmarks: same-run interleaved latency, paired accuracy, tables."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from simq.targets import Artifact, TargetRegistry, interleave, median_interval

THREADS = 2


def session_options(threads: int = THREADS) -> ort.SessionOptions:
    """ONNX Runtime session options as the benchmarks time with: `threads` intra-op threads,
    quiet, and the ort-cpu target's timing settings (several sessions share the cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for key, value in timing_settings().items():
        options.add_session_config_entry(key, value)
    return options


def ort_session(model: ir.Model, threads: int = THREADS) -> ort.InferenceSession:
    options = session_options(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"])


def timing_settings() -> dict[str, str]:
    """The session settings the ort-cpu target times under (`OrtCpuTarget.timing_settings`)."""
    return TargetRegistry().get("ort-cpu").timing_settings()


def timing_text() -> str:
    """What the ort-cpu target's timing settings do to thread spinning, for a table's preamble."""
    settings = timing_settings()
    if settings.get("session.force_spinning_stop") == "1":
        return "thread spinning stopped when each run returns (no idle session spins)"
    if settings.get("session.intra_op.allow_spinning") == "0":
        return "thread spinning off"
    return "ONNX Runtime's default thread spinning"


ROOT = Path(__file__).resolve().parent.parent


def shown_path(path: Path) -> Path:
    """`path` as a doc names it: relative to the repository where it lies inside it."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path


def tolerance_text(tolerance: float | None = None, max_rounds: int | None = None) -> str:
    """The adaptive protocol's stopping rule (the final pass's unless given), for a preamble:
    ``±1.5 % (at most 120 rounds)``."""
    from simq.targets import MAX_ROUNDS, TOLERANCE

    return f"±{(TOLERANCE if tolerance is None else tolerance) * 100:g} % (at most {max_rounds or MAX_ROUNDS} rounds)"


def final_pass_protocol(out: Path) -> str | None:
    """How a finished run's final pass timed, from its published manifests (None: none published):
    runs from before the final pass had its own process and a recorded stopping rule timed in the
    search's process to ±3 %."""
    manifests = sorted((out / "pareto").glob("*/manifest.json"))
    if not manifests:
        return None
    timing = json.loads(manifests[0].read_text())["timing"]
    if "tolerance" not in timing:
        return f"{tolerance_text(0.03, 40)}, in the search's process"
    limit = timing.get("time_limit_s")
    within = f" or {limit / 60:g} minutes" if limit is not None else ""
    return f"{tolerance_text(timing['tolerance'], timing['max_rounds'])}{within}, in a process started for it"


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
    """`simq.targets.interleave` with the benchmarks' longer defaults."""
    return interleave(calls, rounds, per_round, rewarm)


def one_live_session(
    models: Mapping[object, tuple[Path, Mapping[str, np.ndarray], int]], rounds: int, per_round: int, warmup: int = 10
) -> dict[object, list[float]]:
    """Per-call latencies (ms) of each model (its file, feed and intra-op threads), timed as a
    deployment runs it: one live session at a time with ONNX Runtime's defaults (its workers spin
    between calls). Per round each model's session is opened, warmed, timed for `per_round` calls
    and closed, in an order that rotates between rounds."""
    keys = list(models)
    times: dict[object, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            path, feed, threads = models[key]
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for _ in range(warmup):
                session.run(None, feed)
            for _ in range(per_round):
                start = time.perf_counter()
                session.run(None, feed)
                times[key].append((time.perf_counter() - start) * 1e3)
            del session
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def feed_for(artifact: Artifact, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The part of `feed` an artifact's graph takes: a TorchScript export drops inputs a model
    ignores; an OpenVINO model NNCF made has no ONNX, and its IR takes the whole feed."""
    if artifact.onnx.suffix != ".onnx":
        return dict(feed)
    names = {i.name for i in onnx.load(str(artifact.onnx), load_external_data=False).graph.input}
    return {k: v for k, v in feed.items() if k in names}


def ratio_cell(ratios: Sequence[float]) -> str:
    """Per-round ratios in a table cell: their median and the distribution-free 95 % interval of it."""
    low, high = median_interval(ratios)
    return f"{statistics.median(ratios):.3f} [{low:.3f}, {high:.3f}]"


def two_run_rows(labels: Iterable[str], runs: Sequence[Mapping[str, Sequence[float]]], bases: Sequence[str], per_round: int) -> list[list[str]]:
    """Table rows of two interleaved runs (`interleave`'s times by label): each model's median ms
    in the first, then per base its paired ratio with interval in the first run / median in the second."""
    from simq.targets import round_ratios

    rows = []
    for label in labels:
        cells = [label, f"{statistics.median(runs[0][label]):.2f}"]
        for base in bases:
            first, second = (round_ratios(times[label], times[base], per_round) for times in runs[:2])
            cells.append(f"{ratio_cell(first)} / {statistics.median(second):.3f}")
        rows.append(cells)
    return rows


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


def fastest_within(summary: Mapping, limit: float) -> dict | None:
    """The summary row of a finished `simq compile` run's fastest published model within `limit`
    points, as the run decides it (its paired bound on validation); None if there is none."""
    within = [r for r in summary["rows"] if r["kind"] == "candidate" and r.get("search_accuracy_bound") is not None and r["search_accuracy_bound"] <= limit]
    return min(within, key=lambda r: r["latency_ratio"], default=None)


def run_name(out: Path, outs: Sequence[Path]) -> str:
    """A run folder's name in a document: the shortest tail of its path that no other of `outs`
    shares (``simq-out``, or ``readme1/simq-out`` beside ``readme2/simq-out``)."""
    for depth in range(1, len(out.parts) + 1):
        if len({"/".join(o.parts[-depth:]) for o in outs}) == len(outs):
            return "/".join(out.parts[-depth:])
    raise SystemExit(f"{out} is given twice")


def cpu_name() -> str:
    """CPU model and the ISA extensions that matter for integer kernels, as the targets see them."""
    fingerprint = TargetRegistry().get("ort-cpu").fingerprint()
    return f"{fingerprint.cpu} ({', '.join(fingerprint.isa) or 'no SIMD flags found'})"


def artifact_record(artifact: Artifact) -> dict:
    """`artifact` as JSON, for a child process to open it again (`artifact_from`)."""
    return {"target": artifact.target, "path": str(artifact.path), "onnx": str(artifact.onnx),
            "files": [str(f) for f in artifact.files], "settings": dict(artifact.settings)}  # fmt: skip


def artifact_from(record: Mapping) -> Artifact:
    return Artifact(record["target"], Path(record["path"]), Path(record["onnx"]), tuple(map(Path, record["files"])), record["settings"])
