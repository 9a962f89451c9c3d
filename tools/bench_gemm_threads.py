"""Where the second core goes at half width: ONNX Runtime's INT8 dense layers at 1 and 2 threads.
Writes docs/GEMM_THREADS.md.

docs/THREADS.md shows a model at heads = FFN 50 % keeping far more of the unpruned model's time at
2 threads than at 1. This names the ops that lose it. Part 1 times minilm-tweets' dense layers one
at a time (a MatMul of 64 or 128 tokens by each weight shape of the unpruned and the half-width
model, FP32 and as `quantize_dynamic` makes it INT8: DynamicQuantizeMatMul) at 1 and 2 intra-op
threads, as a deployment runs them: one live session at a time with ONNX Runtime's defaults (its
workers spinning between calls, the setting most favourable to the second thread). Per round each
session is opened, warmed, timed and closed, the order rotating; the ratio is a layer's 1-thread
time over its 2-thread time in the same round (above 1: the second thread pays). Part 2 is ONNX
Runtime's profiler on SimQ's unpruned and heads = FFN 50 % INT8 models, ms per run by op type at
1 and 2 threads (the ort-cpu target's timing settings).

Usage: python tools/bench_gemm_threads.py [--rounds N] [--seq 64 128] [--out docs/GEMM_THREADS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, one_live_session, ratio_cell, shown_path, table, timing_text  # noqa: E402
from bench_lowering import _grid_config, _profile  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.data import timing_feed  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import TargetRegistry, round_ratios  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 10
WARMUP = 20
THREADS = (1, 2)
# (layer, K, N unpruned, K, N at heads = FFN 50 %) of minilm-tweets (hidden 384, FFN 1536).
LAYERS = (
    ("Q/K/V (fused, inside QAttention)", 384, 1152, 384, 576),
    ("attention output", 384, 384, 192, 384),
    ("FFN in", 384, 1536, 384, 768),
    ("FFN out", 1536, 384, 768, 384),
)


def _dense(k: int, n: int, seq: int, folder: Path) -> dict[str, Path]:
    """A MatMul of `seq` tokens by a K x N weight: FP32 and quantize_dynamic's INT8 (per channel)."""
    rng = np.random.default_rng(k * 10_000 + n)
    weight = numpy_helper.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "dense",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, seq, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, seq, n])], [weight],
    )  # fmt: skip
    fp32, int8 = folder / f"{k}x{n}_{seq}_fp32.onnx", folder / f"{k}x{n}_{seq}_int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), fp32)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
    return {"FP32": fp32, "INT8": int8}


def part_layers(seqs: list[int], rounds: int, work: Path) -> tuple[str, dict]:
    models, feeds, rows_of = {}, {}, []
    rng = np.random.default_rng(0)
    for seq in seqs:
        for layer, *shapes in LAYERS:
            for width, (k, n) in zip(("unpruned", "50 %"), (shapes[:2], shapes[2:])):
                for precision, path in _dense(k, n, seq, work).items():
                    key = (seq, layer, width, k, n, precision)
                    models[key], feeds[key] = path, {"X": rng.standard_normal((1, seq, k)).astype(np.float32)}
                    rows_of.append(key)
    print(f"{len(models)} layers x {len(THREADS)} thread counts, {rounds} rounds", file=sys.stderr, flush=True)
    # µs per call of every (layer, threads), one live session at a time with ORT's defaults
    ms = one_live_session({(key, t): (models[key], feeds[key], t) for key in models for t in THREADS}, rounds, PER_ROUND, WARMUP)
    times = {key: [v * 1e3 for v in values] for key, values in ms.items()}
    rows, gains = [], {}
    for key in rows_of:
        seq, layer, width, k, n, precision = key
        one, two = times[(key, 1)], times[(key, 2)]
        gain = round_ratios(one, two, PER_ROUND)
        gains[key] = statistics.median(gain)
        rows.append([seq, layer, width, f"{k} x {n}", precision, f"{statistics.median(one):.1f}", f"{statistics.median(two):.1f}", ratio_cell(gain)])
    headers = ["tokens", "layer", "width", "K x N", "precision", "1 thread: µs", "2 threads: µs", "1 thread × 2 threads [95 %]"]
    return table(headers, rows), gains


def part_profile(zoo: Zoo, seq: int, work: Path) -> tuple[str, dict]:
    job = prepare_job(JobSpec("zoo:minilm-tweets", target="ort-cpu", seq_len=seq), zoo).job
    feed = timing_feed(zoo.data("minilm-tweets", "test").inputs, sir.input_domains(job.model), {k: (1, seq) for k in job.structure.signature})
    profiles = {}
    for label, share in (("unpruned", 1.0), ("heads = FFN 50 %", 0.5)):
        artifact = job.target.lower(job.pipeline.build(_grid_config(job.pipeline, share, share, 0)), work / label.replace(" ", "").replace("%", ""))
        for t in THREADS:
            print(f"profile: {label}, {t} thread(s)", file=sys.stderr, flush=True)
            profiles[(label, t)] = _profile(artifact, feed, t)
    columns = [(label, t) for label in ("unpruned", "heads = FFN 50 %") for t in THREADS]
    ops = sorted({op for p in profiles.values() for op in p}, key=lambda op: -profiles[("unpruned", 2)].get(op, 0.0))
    shown = [op for op in ops if max(profiles[c].get(op, 0.0) for c in columns) >= 0.02]
    rows = [[op, *(f"{profiles[c].get(op, 0.0):.3f}" for c in columns)] for op in shown]
    rest = [op for op in ops if op not in shown]
    rows.append([f"{len(rest)} other op types", *(f"{sum(profiles[c].get(op, 0.0) for op in rest):.3f}" for c in columns)])
    rows.append(["total", *(f"{sum(profiles[c].values()):.3f}" for c in columns)])
    headers = ["op", *(f"{label}, {t} thread{'s' * (t > 1)}" for label, t in columns)]
    return table(headers, rows), profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seq", type=int, nargs="+", default=[64, 128], help="tokens per call in part 1")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "GEMM_THREADS.md")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        layers, gains = part_layers(args.seq, args.rounds, Path(tmp))
        profile, profiles = part_profile(Zoo(), 64, Path(tmp))
    int8 = [g for key, g in gains.items() if key[-1] == "INT8"]
    fp32 = [g for key, g in gains.items() if key[-1] == "FP32"]
    half_int8 = [g for key, g in gains.items() if key[-1] == "INT8" and key[2] == "50 %"]
    dense = "DynamicQuantizeMatMul"
    half, full = "heads = FFN 50 %", "unpruned"

    def total(label: str, t: int) -> float:
        return sum(profiles[(label, t)].values())

    moved = {op: profiles[(half, 2)].get(op, 0.0) - profiles[(half, 1)].get(op, 0.0) for op in profiles[(half, 2)]}
    slower = sorted((op for op, d in moved.items() if d > 0.01), key=lambda op: -moved[op])
    findings = (
        f"- The second thread pays on every FP32 layer (1 thread × 2 threads {min(fp32):.2f}–{max(fp32):.2f}) and on "
        f"few INT8 ones ({min(int8):.2f}–{max(int8):.2f}; at half width {min(half_int8):.2f}–{max(half_int8):.2f}): "
        f"the INT8 kernels are short enough that splitting their output columns over two threads (each packs "
        f"the whole quantized input) costs about what it saves.\n"
        f"- In the whole model (64 tokens, profiler): {half}'s {dense} runs {profiles[(half, 1)].get(dense, 0):.3f} ms "
        f"at 1 thread and {profiles[(half, 2)].get(dense, 0):.3f} at 2; the unpruned model's "
        f"{profiles[(full, 1)].get(dense, 0):.3f} and {profiles[(full, 2)].get(dense, 0):.3f}. "
        f"Op types slower at 2 threads than at 1 in {half}: "
        f"{', '.join(f'{op} (+{moved[op]:.3f} ms)' for op in slower) or 'none'}.\n"
        f"- Profiled totals: {half} is {total(half, 1) / total(full, 1):.2f}x the unpruned time at 1 thread and "
        f"{total(half, 2) / total(full, 2):.2f}x at 2 (the profiler's own overhead included)."
    )
    out_flag = "" if args.out.resolve() == ROOT / "docs" / "GEMM_THREADS.md" else f" --out {shown_path(args.out)}"
    doc = f"""# Where the second core goes at half width

Generated by `python tools/bench_gemm_threads.py --rounds {args.rounds} --seq {" ".join(map(str, args.seq))}{out_flag}` in
{(time.monotonic() - started) / 60:.0f} min on {cpu_name()} (fingerprint
`{TargetRegistry().get("ort-cpu").fingerprint().key()}`), ONNX Runtime {ort.__version__}, batch 1.

{__doc__.split(chr(10) + chr(10))[1]}

## Findings

{findings}

## 1. minilm-tweets' dense layers, one at a time

{rounds_text(args.rounds)}

{layers}

## 2. SimQ's INT8 models by op type (ONNX Runtime's profiler, 64 tokens, ms per run)

Every ONNX Runtime session with {timing_text()}; op types under 0.02 ms in every column summed.

{profile}
"""
    args.out.write_text(doc)
    print(doc)


def rounds_text(rounds: int) -> str:
    return (
        f"{rounds} rounds; per round and model, {WARMUP} warm-up calls then {PER_ROUND} timed; µs is the median "
        "call, the ratio the median of per-round ratios with its distribution-free 95 % interval."
    )


if __name__ == "__main__":
    main()
