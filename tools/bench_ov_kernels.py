"""What OpenVINO's CPU plugin executes for SimQ's INT8 minilm-tweets and for NNCF's: the compiled
runtime graph of each, counted by layer type and runtime precision. Compiles only (no timing).
Writes docs/OPENVINO.md.

Models: FP32; NNCF INT8 (transformer preset, the openvino-cpu baseline); SimQ with every unit
static INT8 as the openvino-cpu target lowers it (attention's activation MatMuls reading symmetric
int8 operands), and the same with those operands uint8 with a zero point (before that lever).

Usage: python tools/bench_ov_kernels.py [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402

from simq.passes import is_precision  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import Artifact  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: Layer types whose precision says whether the work ran in integers.
SHOWN = ("FullyConnected", "MatMul", "FakeQuantize", "Convert", "Eltwise", "Transpose", "Reshape", "Gather")


def executed(target, artifact: Artifact) -> collections.Counter:
    """(layer type, runtime precision) -> count, over the executed layers of the compiled model."""
    counts: collections.Counter = collections.Counter()
    for op in target.compiled(artifact).get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = str(info["layerType"].astype(str))
        if kind not in ("Input", "Output", "Const"):
            counts[kind, str(info["runtimePrecision"].astype(str))] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"))
    args = parser.parse_args()
    zoo = Zoo(args.cache_dir) if args.cache_dir else Zoo()
    job = prepare_job(
        JobSpec("zoo:minilm-tweets", target="openvino-cpu", prune=False, cache_dir=args.cache_dir), zoo
    ).job
    target, pipeline = job.target, job.pipeline
    config = {k.name: "int8" for k in pipeline.knobs if is_precision(k.name) and "int8" in k.domain}
    signed = pipeline.lowering
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {"FP32": target.lower(job.model, work / "fp32")}
        nncf = next(name for name in job.baselines if name.startswith("NNCF INT8") and "weights" not in name)
        models[nncf] = job.baselines[nncf](work / "nncf")
        pipeline.lowering = replace(signed, signed_operands=False)
        models["SimQ INT8, activation operands uint8 + zero point"] = target.lower(
            pipeline.build(config), work / "unsigned"
        )
        pipeline.lowering = signed
        models["SimQ INT8 (openvino-cpu today: symmetric int8 operands)"] = target.lower(
            pipeline.build(config), work / "signed"
        )
        counts = {name: executed(target, artifact) for name, artifact in models.items()}
    keys = sorted({k for c in counts.values() for k in c if k[0] in SHOWN})
    rows = [
        [f"{kind} {precision}", *[str(c.get((kind, precision), 0) or "") for c in counts.values()]]
        for kind, precision in keys
    ]
    rows.append(["**all executed layers**", *[f"**{sum(c.values())}**" for c in counts.values()]])
    attention = {name: {p: n for (k, p), n in c.items() if k == "MatMul"} for name, c in counts.items()}
    doc = f"""# What OpenVINO executes: SimQ's INT8 against NNCF's

Written by `python tools/bench_ov_kernels.py` on {cpu_name()} (fingerprint `{target.fingerprint().key()}`),
OpenVINO's CPU plugin with the target's settings (2 threads, latency hint, FP32 inference
precision). minilm-tweets, every unit static INT8; NNCF: `nncf.quantize` with the transformer preset
on the same calibration batches. Counts of the compiled model's executed layers by type and runtime
precision (`get_runtime_model()`); compile only, nothing timed (docs/LOWERING.md part 3 times them).

{table(["layer, precision", *counts], rows)}

Attention's MatMuls of two activations (scores and context), by runtime precision: {"; ".join(f"{n}: {dict(sorted(a.items()))}" for n, a in attention.items())}.

OpenVINO's INT8 MatMul takes a signed second operand only as symmetric int8: with uint8 and a zero
point, those MatMuls run in FP32 behind Convert and Subtract layers. The openvino-cpu target's
lowering (`Lowering.signed_operands`) quantizes them as NNCF's transformer preset does.
"""
    (ROOT / "docs" / "OPENVINO.md").write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
