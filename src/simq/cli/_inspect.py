"""`simq inspect MODEL`: what SimQ sees in a model."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

import onnx_ir as ir
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from simq import ir as simq_ir
from simq.cli._common import LoadedModel, add_data_arguments, add_model_arguments, cache_root, load_model
from simq.errors import InvalidArgumentError, OutputError
from simq.ir import Structure
from simq.targets import lowering_summary

__all__ = ["register", "run", "to_dot"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect",
        help="summarise a model: ops, parameters, MACs, layers, channel groups, quantizable nodes",
        description="Summarise what SimQ finds in a model: op histogram, parameters and MACs, transformer "
        "layers, channel groups, removable blocks and quantizable nodes.",
    )
    add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the full analysis as JSON")
    parser.add_argument("--dot", type=Path, metavar="FILE", help="write the graph for Graphviz to FILE")
    parser.add_argument("--layer", type=int, metavar="N", help="with --dot: only transformer layer N")
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="also quantize each node alone to INT8 and report the output error (on --data, else a zoo model's "
        "calibration split, else synthetic inputs within the model's input ranges; cached per model file and data)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    console = Console()
    status_console = Console(stderr=True)
    if args.layer is not None and args.dot is None:
        raise InvalidArgumentError("--layer selects what --dot writes; give --dot FILE too.")
    loaded = load_model(args, status_console)
    structure = simq_ir.analyze(loaded.model, loaded.signature)
    if args.dot is not None:
        _write_dot(loaded.model, structure, args.dot, args.layer)
    scores = _sensitivity(args, loaded, structure, status_console) if args.sensitivity else None
    lowering = lowering_summary(loaded.model)
    lowered = bool(lowering["fused_ops"]) or lowering["inference_precision"] != "fp32" or "fusion" in lowering or any(
        not k.endswith("fp32") for k in lowering["precisions"]
    )
    if args.json:
        payload = {"model": loaded.source, **structure.to_dict(), "lowering": lowering}
        if scores is not None:
            payload["sensitivity"] = scores
        if console.is_terminal:
            console.print_json(json.dumps(payload))
        else:  # plain JSON for pipes and files
            print(json.dumps(payload, indent=1))
    else:
        _print_summary(console, loaded.source, structure)
        if lowered:
            _print_lowering(console, lowering)
        if scores is not None:
            _print_sensitivity(console, loaded.model, structure, scores)
        if args.dot is not None:
            console.print(f"graph written to {args.dot}")
    return 0


def _print_lowering(console: Console, lowering: dict) -> None:
    """What a compiled artifact runs: fused kernels, precisions, and any fallback it recorded."""
    table = Table(title="Lowered for a runtime", title_justify="left")
    table.add_column("")
    table.add_column("")
    table.add_row("fused kernels", ", ".join(f"{op} {n}" for op, n in lowering["fused_ops"].items()) or "none")
    table.add_row("precisions", ", ".join(f"{k} {n}" for k, n in lowering["precisions"].items()) or "none")
    table.add_row("float parts run in", lowering["inference_precision"])
    if "fusion" in lowering:
        fusion = lowering["fusion"]
        table.add_row("fusion", fusion["status"] + (f" ({fusion['reason']})" if fusion.get("reason") else ""))
    if "notes" in lowering:
        table.add_row("notes", str(lowering["notes"]))
    console.print(table)
    if not lowering["fused_ops"] and "fusion" not in lowering:
        return
    console.print("MACs and the analysis above stop at fused kernels, which ONNX shape inference cannot see through.")


def _fmt(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _print_summary(console: Console, source: str, s: Structure) -> None:
    signature = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in s.signature.items())
    console.print(f"[bold]{source}[/]  inputs: {signature}")
    console.print(
        f"parameters {_fmt(s.params)} ({s.weight_bytes / 2**20:.1f} MiB)   MACs {_fmt(s.macs)}   "
        f"nodes {sum(s.op_counts.values())}"
    )

    ops = Table(title="Ops", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    ops.add_column("MACs", justify="right")
    ops.add_column("params", justify="right")
    macs, params = Counter(), Counter()
    for c in s.costs:
        macs[c.op_type] += c.macs
        params[c.op_type] += c.params
    for op, count in sorted(s.op_counts.items(), key=lambda kv: (-macs[kv[0]], -kv[1])):
        ops.add_row(op, str(count), _fmt(macs[op]) if macs[op] else "", _fmt(params[op]) if params[op] else "")
    console.print(ops)

    if s.layers:
        layers = Table(title="Transformer layers", title_justify="left")
        for col in ("layer", "stack", "heads x size", "FFN width", "activation", "MACs"):
            layers.add_column(col, justify="right" if col in ("layer", "stack", "FFN width", "MACs") else "left")
        blocks = {b.layer: b for b in s.removable_blocks if b.layer is not None}
        for layer in s.layers:
            a, f = layer.attention, layer.ffn
            nodes = set(blocks[layer.index].nodes) if layer.index in blocks else set()
            layer_macs = sum(c.macs for c in s.costs if c.node in nodes)
            ops_in = [s_.op_type for s_ in s.costs if s_.node in f.activation]
            layers.add_row(
                str(layer.index), str(layer.stack), f"{a.num_heads} x {a.head_size}", str(f.width),
                "+".join(dict.fromkeys(ops_in)), _fmt(layer_macs),
            )  # fmt: skip
        console.print(layers)
    if s.attention_blocks > len(s.layers):
        console.print(
            f"{s.attention_blocks - len(s.layers)} of {s.attention_blocks} attention blocks are not in a transformer layer SimQ "
            "recognises: their heads and FFN width cannot be pruned.", highlight=False,
        )  # fmt: skip

    if s.channel_groups:
        groups = Table(title="Channel groups", title_justify="left")
        for col in ("group", "channels", "producers", "consumers", "prunable"):
            groups.add_column(col, justify="left" if col == "prunable" else "right")
        for g in s.channel_groups:
            groups.add_row(
                str(g.index), str(g.size), str(len(g.producers)), str(len(g.consumers)),
                "yes" if g.prunable else f"no: {g.reason}",
            )  # fmt: skip
        console.print(groups)

    residual = [b for b in s.removable_blocks if b.kind == "residual"]
    if residual:
        table = Table(title="Removable residual blocks", title_justify="left")
        for col in ("block", "input", "output", "nodes"):
            table.add_column(col)
        for b in residual:
            table.add_row(str(b.index), b.input, b.output, str(len(b.nodes)))
        console.print(table)
    elif s.removable_blocks:
        console.print(f"Removable blocks: {len(s.removable_blocks)} (the transformer layers)")

    quant = Table(title="Quantizable nodes", title_justify="left")
    for col in ("op", "kind", "count", "share of MACs"):
        quant.add_column(col, justify="right" if col in ("count", "share of MACs") else "left")
    tally: Counter[tuple[str, str]] = Counter()
    qmacs: Counter[tuple[str, str]] = Counter()
    costs = {c.node: c for c in s.costs}
    for q in s.quantizable:
        tally[(q.op_type, q.kind)] += 1
        qmacs[(q.op_type, q.kind)] += costs[q.node].macs
    for (op, kind), count in tally.most_common():
        share = qmacs[(op, kind)] / s.macs if s.macs else 0.0
        quant.add_row(op, kind, str(count), f"{share:.1%}")
    console.print(quant)


def _sensitivity(
    args: argparse.Namespace, loaded: LoadedModel, structure: Structure, console: Console
) -> dict[str, float]:
    """Per-node INT8 sensitivity, cached beside the zoo cache under the model file's hash."""
    from simq.passes.quant import QuantizePass, calibrate, sensitivity

    batches = loaded.calibration_batches(args, count=8)
    cache = None
    if loaded.path is not None:  # keyed by the model file and the examples it is measured on
        digest = hashlib.sha256(loaded.path.read_bytes())
        for batch in batches:
            for name in sorted(batch):
                digest.update(batch[name].tobytes())
        cache = cache_root(args) / "sensitivity" / f"{digest.hexdigest()[:16]}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
    nodes = len(QuantizePass.knobs(structure))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("calibrating", total=len(batches))
        calibration = calibrate(loaded.model, structure, batches, on_batch=lambda: progress.advance(task))
        task = progress.add_task("quantizing one node at a time", total=nodes)
        scores = sensitivity(loaded.model, structure, calibration, batches[:2], on_node=lambda: progress.advance(task))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".partial")
        tmp.write_text(json.dumps(scores))
        tmp.replace(cache)
    return scores


def _print_sensitivity(console: Console, model: ir.Model, s: Structure, scores: dict[str, float]) -> None:
    table = Table(title="INT8 sensitivity (1 - output cosine, only this node quantized)", title_justify="left")
    for col in ("node", "op", "role", "share of MACs", "sensitivity"):
        table.add_column(col, justify="right" if col in ("share of MACs", "sensitivity") else "left")
    costs = {c.node: c for c in s.costs}
    for node, score in sorted(scores.items(), key=lambda kv: -kv[1]):
        share = costs[node].macs / s.macs if s.macs else 0.0
        role = model.graph.node(node).meta.get(simq_ir.META_ROLE, "")  # left there by analyze()
        table.add_row(node, costs[node].op_type, role, f"{share:.1%}", f"{score:.2e}")
    console.print(table)


def _dot_id(name: str) -> str:
    return json.dumps(name)  # a JSON string is a valid DOT quoted ID


def to_dot(model: ir.Model, structure: Structure, layer: int | None = None) -> str:
    """The graph (or one transformer layer of it) in Graphviz DOT."""
    nodes = list(model.graph)
    if layer is not None:
        blocks = [b for b in structure.removable_blocks if b.layer == layer]
        if not blocks:
            raise InvalidArgumentError(
                f"--layer {layer}: the model has {len(structure.layers)} transformer layers (0-based)."
            )
        keep = set(blocks[0].nodes)
        nodes = [n for n in nodes if n.name in keep]
    names = {n.name for n in nodes}
    lines = [
        "digraph model {",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontsize=10];',
    ]
    for node in nodes:
        role = node.meta.get(simq_ir.META_ROLE)
        label = node.op_type + (f"\n{role}" if role else "")  # JSON's \n escape is DOT's line break
        color = ', fillcolor="#d6e9ff"' if role else ""
        lines.append(f"  {_dot_id(node.name)} [label={json.dumps(label)}{color}];")
    for node in nodes:
        for value in node.inputs:
            if value is None or value.const_value is not None:
                continue
            producer = value.producer()
            if producer is not None and producer.name in names:
                shape = value.meta.get(simq_ir.META_SHAPE)
                label = f' [label="{"x".join(map(str, shape))}", fontsize=8]' if shape else ""
                lines.append(f"  {_dot_id(producer.name)} -> {_dot_id(node.name)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _write_dot(model: ir.Model, structure: Structure, path: Path, layer: int | None) -> None:
    text = to_dot(model, structure, layer)
    try:
        path.write_text(text)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror}); choose a writable path for --dot.") from e
