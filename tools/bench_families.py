"""Families beyond the zoo: what SimQ's pruning and INT8 buy on them against the recipe, same run.

Writes docs/FAMILIES.md. For each family, a classifier of a published size is built from its
transformers config with random weights (latency only: random weights say nothing about
accuracy) and saved as a folder, as a user's would be. On ort-cpu it is timed against FP32 and
against the recipe users run: ORT's transformers optimizer on the TorchScript export, then
per-tensor dynamic INT8 (for Swin, DeBERTa and ModernBERT the optimizer fuses little; each
section says what it fused). SimQ's builds come from the same pipeline `simq compile` uses: every unit dynamic
INT8, heads and FFN at 100 / 75 / 50 % of every layer (by importance on random inputs), and two
middle layers dropped.

Latency: batch 1, 2 threads, every model of a family interleaved in one process with the ort-cpu
target's timing settings in every session (warm-up, re-warm after each switch, rotating order), median of
per-round ratios with a bootstrap 95 % interval, then a second run in turn.

Usage: python tools/bench_families.py [--rounds N] [--only NAME ...] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402
from bench_lowering import Case, Entry, _folder, _grid_config, console, simq_entry, size_ratio, time_all  # noqa: E402

import simq.ir as sir  # noqa: E402
from simq.passes import Pipeline  # noqa: E402
from simq.passes.fuse.ort_fusion import FUSION_METADATA  # noqa: E402
from simq.passes.prune import collect_stats  # noqa: E402
from simq.passes.quant import calibrate  # noqa: E402
from simq.targets import TargetRegistry  # noqa: E402
from simq.targets.ort_cpu import RECIPE  # noqa: E402
from simq.tune import transformers_source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRID = ((1.0, 1.0, 0), (0.75, 0.75, 0), (0.5, 0.5, 0), (1.0, 1.0, 2))
TOKENS = 128


def _families(transformers):
    """name -> (what it is, config, model class, input kind)."""
    return {
        "swin-tiny": (
            "Swin-T (28M parameters), 224 x 224 images",
            transformers.SwinConfig(image_size=224, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], num_labels=3),
            transformers.SwinForImageClassification, "image",
        ),
        "deberta-v3-small": (
            f"DeBERTa-v3-small's encoder (6 layers, 768 wide, 12 heads, relative attention), vocabulary cut to 32k, {TOKENS} tokens",
            transformers.DebertaV2Config(
                vocab_size=32000, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
                max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
                share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, num_labels=3,
            ),
            transformers.DebertaV2ForSequenceClassification, "text",
        ),
        "modernbert-base": (
            f"ModernBERT-base (22 layers, 768 wide, 12 heads, fused Q/K/V with rotary positions, gated FFN), {TOKENS} tokens",
            transformers.ModernBertConfig(num_labels=3, pad_token_id=0),
            transformers.ModernBertForSequenceClassification, "text",
        ),
        "dinov2-small": (
            "DINOv2-S/14 (22M parameters, layer scale), 224 x 224 images (257 tokens)",
            transformers.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=224, patch_size=14, num_labels=3),
            transformers.Dinov2ForImageClassification, "image",
        ),
    }


def _inputs(kind: str, count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "image":
        return {"pixel_values": rng.standard_normal((count, 3, 224, 224)).astype(np.float32)}
    ids = rng.integers(1, 32000, (count, TOKENS))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def prepare_family(name: str, spec, work: Path) -> tuple[Case, list[Entry], dict]:
    import torch

    _, config, cls, kind = spec
    folder = work / name
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        cls(config).eval().save_pretrained(folder)
    model = sir.load(folder, cache_dir=work / "cache")
    signature = {d.name: (1, *_inputs(kind, 1, 0)[d.name].shape[1:]) for d in sir.input_domains(model)}
    structure = sir.analyze(model, signature)
    batches = [{k: v for k, v in _inputs(kind, 8, seed).items() if k in signature} for seed in range(2)]
    target = TargetRegistry().get("ort-cpu")
    pipeline = Pipeline(
        model, structure, calibration=calibrate(model, structure, batches), calibration_batches=batches,
        stats=collect_stats(model, structure, batches), supports=target.supports, lowering=target.lowering(signature),
    )  # fmt: skip
    feed = {k: v[:1] for k, v in batches[0].items()}
    case = Case(name, target, model, structure, pipeline, batches, feed, ({}, None), ({}, None))
    export = transformers_source(folder).export_for_tools(batches[0], work / f"{name}-tools.onnx")
    builds = target.baselines(model, structure, batches, [export])
    entries = [Entry("FP32", target.lower(model, _folder(work, case, "fp32"))), Entry(RECIPE, builds[RECIPE](_folder(work, case, "recipe")))]
    fused = json.loads(sir.load(entries[1].artifact.onnx).metadata_props.get(FUSION_METADATA, "{}") or "{}")
    for heads, ffn, drops in GRID:
        label = f"SimQ heads {heads:.0%} FFN {ffn:.0%}{f', {drops} layers dropped' if drops else ''}"
        console.print(f"  {name}: {label}")
        entries.append(simq_entry(case, label, _grid_config(pipeline, heads, ffn, drops), work))
    return case, entries, {"layers": len(structure.layers), "fused": fused.get("counts", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    families = {k: v for k, v in _families(transformers).items() if not args.only or k in args.only}
    work = args.work or Path(tempfile.mkdtemp(prefix="simq-families-"))
    start = time.monotonic()
    sections = []
    for name, spec in families.items():
        console.print(f"{name}: building")
        case, entries, found = prepare_family(name, spec, work)
        runs = []
        for run in range(2):
            console.print(f"{name}: timing, run {run + 1}")
            time_all(case, entries, ["FP32", RECIPE], args.rounds)
            runs.append({e.label: dict(e.ratios) for e in entries})
        rows = []
        for e in entries:
            first, second = runs[0][e.label], runs[1][e.label]
            fp32, bar = first["FP32"], first[RECIPE]
            rows.append([
                e.label, f"{first['ms'][0]:.1f}", f"{fp32[0]:.3f} [{fp32[1]:.3f}, {fp32[2]:.3f}]",
                f"{bar[0]:.3f} [{bar[1]:.3f}, {bar[2]:.3f}]; {second[RECIPE][0]:.3f}",
                f"{size_ratio(e, entries[0]):.3f}",
            ])  # fmt: skip
        fused = ", ".join(f"{op} {n}" for op, n in found["fused"].items()) or "nothing"
        sections.append(
            f"## {name}\n\n`{_command(args, name)}`\n\n{spec[0]}; {found['layers']} transformer layers found. The recipe's optimizer fused: {fused}.\n\n"
            + table(["model", "ms (run 1)", "× FP32 (run 1)", "× the recipe (run 1 [95 %]; run 2)", "size × FP32"], rows)
        )
        _write(sections, args, start)  # after every family: a later one may fail


def _command(args: argparse.Namespace, name: str) -> str:
    return f"python tools/bench_families.py --rounds {args.rounds} --only {name}"


def _write(sections: list[str], args: argparse.Namespace, start: float) -> None:
    """docs/FAMILIES.md with this run's sections; a family not run this time keeps its section
    (each section names the command that measured it)."""
    out = ROOT / "docs" / "FAMILIES.md"
    ours = {section.split("\n", 1)[0] for section in sections}
    kept = [] if not out.is_file() else ["## " + part for part in out.read_text().split("\n## ")[1:]]
    kept = [part.rstrip() for part in kept if part.split("\n", 1)[0] not in ours and "`python tools/bench_families.py" in part]
    text = (
        "# Families beyond the zoo: pruning and INT8 against the recipe\n\n"
        f"Generated by tools/bench_families.py on {cpu_name()}, 2 threads, batch 1 (each section's command below).\n\n"
        + __doc__.split("\n\n", 1)[1].split("\n\nUsage")[0].strip() + "\n\n" + "\n\n".join([*kept, *sections]) + "\n"
    )
    out.write_text(text)
    console.print(f"wrote {out} ({(time.monotonic() - start) / 60:.0f} min)")


if __name__ == "__main__":
    main()
