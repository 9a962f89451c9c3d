"""What INT8 and INT4 embedding tables cost and save: SimQ's unpruned dynamic-INT8 minilm-tweets on
ort-cpu with its embedding tables INT8 (the default), the vocabulary INT4 (the `int4w` choice the
search has for a table of at least `VOCABULARY_ROWS` rows: GatherBlockQuantized), and every table
INT4 (positions and token types too, which the search is not offered), and the INT8 tables with one
scale per column (which SimQ does not take). Accuracy paired per
example on the zoo's validation and test splits; latency interleaved in one process with the ort-cpu
target's timing settings, two runs. Writes docs/TABLES.md.

Usage: python tools/bench_tables.py [--rounds N] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table, timing_text  # noqa: E402
from bench_lowering import Entry, fmt_delta, fmt_ratio, prepare, score_all, simq_entry, time_all, uniform  # noqa: E402

from simq.ir._cost import VOCABULARY_ROWS  # noqa: E402
from simq.passes._edit import constant  # noqa: E402
from simq.passes.quant._rewrites import INT4_TABLE_BLOCK, int4_table, require_ms_opset  # noqa: E402
from simq.targets import lowering_summary  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def every_table_int4(entry: Entry, case, work: Path) -> Entry:
    """`entry`'s model with its remaining INT8 tables (positions, token types) INT4 as well."""
    small = {f"quant.{q.node}" for q in case.structure.quantizable if q.op_type == "Gather" and entry.config.get(f"quant.{q.node}") != "int4w"}
    model = case.pipeline.build(dict(entry.config) | dict.fromkeys(small, "fp32"))  # float, then INT4 below
    for node in [n for n in model.graph if n.op_type == "Gather" and n.inputs[0].const_value is not None and n.inputs[0].dtype == ir.DataType.FLOAT]:
        int4_table(model.graph, node)
    require_ms_opset(model)
    folder = work / "every-table-int4"
    folder.mkdir(parents=True, exist_ok=True)
    return Entry("every table INT4 (not offered)", case.target.lower(model, folder), simq=True, config=entry.config, lowering=lowering_summary(model))


def one_scale_per_column(entry: Entry, case, work: Path) -> Entry:
    """`entry`'s model with its INT8 tables quantized with one scale per column (the hidden axis)
    and dequantized by a per-axis DequantizeLinear: the form SimQ does not take."""
    gathers = {f"quant.{q.node}" for q in case.structure.quantizable if q.op_type == "Gather" and entry.config.get(f"quant.{q.node}") == "int8"}
    model = case.pipeline.build(dict(entry.config) | dict.fromkeys(gathers, "fp32"))  # float, then INT8 below
    for node in [n for n in model.graph if n.op_type == "Gather" and n.inputs[0].const_value is not None and n.inputs[0].dtype == ir.DataType.FLOAT]:
        table = node.inputs[0]
        w = table.const_value.numpy().astype(np.float32)
        scale = (np.maximum(np.abs(w).max(axis=0), 1e-8) / 127.0).astype(np.float32)
        node.replace_input_with(0, constant(model.graph, f"{table.name}.int8", np.clip(np.round(w / scale), -127, 127).astype(np.int8)))
        if not table.uses():  # the float table goes, as SimQ's own rewrite drops it
            model.graph.initializers.pop(table.name)
        out, uses = node.outputs[0], list(node.outputs[0].uses())
        dequantize = ir.node(
            "DequantizeLinear", [out, constant(model.graph, f"{node.name}.scale", scale), constant(model.graph, f"{node.name}.zero_point", np.zeros(scale.shape, np.int8))],
            attributes={"axis": -1},
        )  # fmt: skip
        dequantize.outputs[0].dtype, dequantize.outputs[0].shape = out.dtype, out.shape
        out.type = ir.TensorType(ir.DataType.INT8)
        model.graph.insert_after(node, [dequantize])
        for use in uses:
            use.node.replace_input_with(use.idx, dequantize.outputs[0])
    folder = work / "one-scale-per-column"
    folder.mkdir(parents=True, exist_ok=True)
    return Entry("SimQ int8dyn, tables INT8, one scale per column (not taken)", case.target.lower(model, folder), simq=True, config=entry.config, lowering=lowering_summary(model))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "tables")
    args = parser.parse_args()
    case = prepare(Zoo(), "minilm-tweets", "ort-cpu", args.work)
    base = uniform(case, "int8dyn")
    tables = [k.name for k in case.pipeline.knobs if k.name.startswith("quant.") and "int4w" in k.domain and k.name.split(".", 1)[1] in
              {q.node for q in case.structure.quantizable if q.op_type == "Gather"}]  # fmt: skip
    fp32 = Entry("FP32", case.target.lower(case.model, args.work / "fp32"))
    int8 = simq_entry(case, "SimQ int8dyn, tables INT8 (default)", base, args.work)
    vocabulary = simq_entry(case, "SimQ int8dyn, vocabulary INT4", base | dict.fromkeys(tables, "int4w"), args.work)
    entries = [fp32, int8, one_scale_per_column(int8, case, args.work), vocabulary, every_table_int4(vocabulary, case, args.work)]
    score_all(case, entries)
    runs = []
    for _ in range(2):
        time_all(case, entries, [int8.label, fp32.label], args.rounds)
        runs.append({e.label: dict(e.ratios) for e in entries})
    rows = [
        [e.label, fmt_delta(e.validation, fp32.validation), fmt_delta(e.validation, int8.validation), fmt_delta(e.test, fp32.test),
         fmt_delta(e.test, int8.test), f"{fmt_ratio(runs[0][e.label][int8.label])} / {runs[1][e.label][int8.label][0]:.3f}",
         f"{runs[0][e.label][fp32.label][0]:.3f}", f"{e.artifact.size_bytes / 1e6:.1f}", f"{fp32.artifact.size_bytes / e.artifact.size_bytes:.2f}x"]
        for e in entries
    ]  # fmt: skip
    shape = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in case.feed.items())
    doc = f"""# INT8 and INT4 embedding tables

Generated by `python tools/bench_tables.py --rounds {args.rounds}` on {cpu_name()}, 2 threads, batch 1 ({shape}).

minilm-tweets' word table (30,522 x 384) is 11.7 M of its 22.7 M parameters: INT8, it is half of
every compressed model's bytes. On ort-cpu the search may store it INT4 (`int4w`: ONNX Runtime's
GatherBlockQuantized, symmetric, one FP32 scale per {INT4_TABLE_BLOCK} values of a row, dequantizing only the
rows gathered); tables of fewer than {VOCABULARY_ROWS:,} rows (positions, token types) are not offered it.
INT8 tables are symmetric with one scale per table; the row "one scale per column" requantizes
them with one per column of the hidden axis (ONNX Runtime's per-axis DequantizeLinear), which SimQ
does not take.
Every model below is SimQ's unpruned dynamic-INT8 model with only its tables changed. Accuracy: paired
drops in points with 95 % intervals, on validation ({len(case.validation[1]):,} tweets) and test ({len(case.test[1]):,}). Latency:
{args.rounds} interleaved rounds, {timing_text()}, median of per-round ratios with a bootstrap 95 % interval,
then the same from a second run.

{table(["model", "Δ validation vs FP32", "Δ validation vs INT8 tables", "Δ test vs FP32", "Δ test vs INT8 tables", "latency × INT8 tables [95 %] / run 2", "latency × FP32", "MB", "smaller than FP32"], rows)}
"""
    path = ROOT / "docs" / "TABLES.md"
    path.write_text(doc)
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
