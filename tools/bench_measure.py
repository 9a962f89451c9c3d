"""How repeatable is one latency measurement? The same artifact measured in separate calls.

Each call is what `simq measure` does: a fresh session (ONNX Runtime) or compiled model
(OpenVINO), warm-up, then timed repeats and their median. The spread of those medians across
calls bounds what any cost model trained on such labels can achieve. Writes docs/MEASURE.md.

Usage: python tools/bench_measure.py [--cache-dir DIR] [--calls 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402

import simq.ir as sir  # noqa: E402
from simq.targets import TargetRegistry  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("SIMQ_CACHE_DIR"))
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "MEASURE.md")
    args = parser.parse_args()
    zoo, registry = Zoo(args.cache_dir), TargetRegistry()
    rows = []
    for name in ("bert-base", "resnet50", "minilm-tweets"):
        model = sir.load(zoo.path(name))
        feed = {k: v[:1] for k, v in next(zoo.data(name, "test").batches(1))[0].items()}
        for target_name in ("ort-cpu", "openvino-cpu"):
            target = registry.get(target_name)
            with tempfile.TemporaryDirectory() as tmp:
                artifact = target.lower(model, Path(tmp))
                medians, spreads = [], []
                for call in range(args.calls):
                    stats = target.measure(artifact, feed, warmup=10, repeats=30)
                    medians.append(stats.median)
                    spreads.append(stats.spread)
                    console.print(f"{name} on {target_name}: call {call + 1}/{args.calls}: {stats.median:.2f} ms")
            low, high = min(medians), max(medians)
            rows.append(
                [
                    name, target_name, f"{statistics.median(medians):.2f}", f"{low:.2f} – {high:.2f}",
                    f"{(high - low) / statistics.median(medians):.1%}",
                    f"{statistics.pstdev(medians) / statistics.mean(medians):.1%}",
                    f"{statistics.median(spreads):.1%}",
                ]
            )  # fmt: skip
    headers = ["model", "target", "median of medians ms", "min – max", "range / median", "CV of medians", "typical IQR within a call"]
    doc = f"""# Measurement repeatability

Written by `python tools/bench_measure.py --calls {args.calls}`. Machine: {cpu_name()}, {os.cpu_count()} cores;
2 threads, batch 1. Each call: a fresh session or compiled model, 10 warm-up calls, 30 timed calls,
their median. The same artifact, measured {args.calls} times in a row in one process.

{table(headers, rows)}

The range of the medians across calls is the noise floor of any single measurement, and so of
the labels a latency predictor learns from: a predictor cannot be checked to better than this.
It is why SimQ compares candidates only against a reference measured in the same run
(interleaved) and reports ratios.
"""
    args.out.write_text(doc)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
