"""What tuning buys: a zoo model tuned elastically (`simq tune`), then compiled, against the same
sub-networks without tuning and against the recipe users run. Writes docs/TUNE.md for
minilm-tweets (docs/TUNE_<model>.md for another, e.g. digits-vit) and docs/img/tune_<model>.png.

1. `simq tune zoo:MODEL` (timed; the train split only; widths and depth elastic).
2. One table, every model timed in the same run (interleaved, per-round paired ratios, bootstrap
   95 % intervals; twice at 64 tokens and twice at 128, batch 1, every position attended): the original FP32 model, the recipe on it (ORT's transformers optimizer +
   per-tensor dynamic INT8: the bar), the tuned full model alone and with the recipe (what tuning
   alone buys), and a grid of sub-networks (heads = FFN width at 100/75/50 %, by every depth
   tuning trained, INT8 everywhere; INT4 weights for size) built by SimQ from the tuned model
   (first-k, its trained depth order) and, at full depth and two layers fewer, from the original
   (importance order + least-squares refit). Accuracy is paired against the original FP32 model,
   on the zoo's validation split (where a choice is made) and its test split. The model `simq compile`
   (3.) published as the fastest within 1 point of the original is timed and scored in the same table.
3. `simq compile` on the tuned folder (the zoo's splits), whose front is plotted with the grid.

`--target openvino-cpu` does 2. and 3. for OpenVINO, against NNCF's post-training INT8 (transformer
preset) as the bar, and writes docs/TUNE_openvino.md (docs/TUNE_<model>_openvino.md); the tuned
folder is shared with the ort-cpu run in the same work folder.

Usage: python tools/bench_tune.py [MODEL] [--target T] [--epochs N] [--lr LR] [--distil-hidden W] [--budget N] [--rounds N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, fastest_within, table, timing_text  # noqa: E402
from bench_lowering import Case, Entry, fmt_delta, fmt_ratio, paired, score_all, simq_entry, time_all, uniform, within_one_point  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.data import timing_feed  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import Artifact  # noqa: E402
from simq.tune import TuneOptions  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The bar by target: the baseline's name in Target.baselines, and what it is to a user.
BARS = {
    "ort-cpu": ("ORT optimizer + dynamic INT8", "the recipe users run"),
    "openvino-cpu": ("NNCF INT8 (transformer)", "NNCF's post-training INT8, what OpenVINO users run"),
}
WIDTHS = (1.0, 0.75, 0.5)
TOKENS = (64, 128)  # sequence lengths a token model is timed at
RUNS = 2


def depth_knobs(case: Case) -> list[str]:
    """The depth knobs: one per block of an untuned model, one per block tuning drops (in its
    order) of a tuned one."""
    from simq.passes import knob_kind

    return [k.name for k in case.pipeline.knobs if knob_kind(k.name) == "depth"]


def grid_config(case: Case, width: float, drops: int) -> dict:
    """Every unit int8dyn, heads and FFN at `width`, `drops` blocks dropped: the middle ones for an
    untuned model, the first of tuning's order for a tuned one (the pipeline's repair puts them there)."""
    config = uniform(case, "int8dyn", {"heads": width, "ffn": width})
    depth = depth_knobs(case)
    chosen = depth if case.pipeline.trained is not None else sorted(depth[1:-1], key=lambda n: abs(depth.index(n) - (len(depth) - 1) / 2))
    return config | {name: name in chosen[:drops] for name in depth}


def case_of(name: str, spec: JobSpec, zoo: Zoo | None) -> tuple[Case, object]:
    """A benchmark case (and its compile job, for its baselines) prepared as simq compile would."""
    prepared = prepare_job(spec, zoo)
    job, examples = prepared.job, prepared.examples
    validation, test = examples.role("validation"), examples.role("test")
    return Case(name, job.target, job.model, job.structure, job.pipeline, list(job.pipeline.calibration_batches), job.feed,
                (validation.inputs, validation.labels), (test.inputs, test.labels)), job  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="zoo:minilm-tweets", help="a zoo model with a torch source")
    parser.add_argument("--target", choices=sorted(BARS), default="ort-cpu", help="where the tuned model is compiled and timed")
    parser.add_argument("--epochs", type=int, default=TuneOptions().epochs)
    parser.add_argument("--tune-minutes", type=float, default=60, help="simq tune's --time-limit (0: none)")
    parser.add_argument("--lr", type=float, help="simq tune's learning rate (default: simq tune's)")
    parser.add_argument("--distil-hidden", type=float, help="simq tune's hidden-state distillation weight (default: simq tune's)")
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--work", type=Path, help="default .bench/tune (minilm-tweets) or .bench/tune-MODEL")
    args = parser.parse_args()
    name = args.model.removeprefix("zoo:")
    main_model = name == "minilm-tweets"
    bar, bar_text = BARS[args.target]
    on_ort = args.target == "ort-cpu"
    work_root = args.work or ROOT / ".bench" / ("tune" if main_model else f"tune-{name}")
    zoo = Zoo()
    simq = str(Path(sys.executable).with_name("simq"))
    tuned_dir = work_root / "tuned"
    tune_cmd = ["simq", "tune", args.model, "--out", str(tuned_dir), "--epochs", str(args.epochs)]
    tune_cmd += ["--time-limit", f"{args.tune_minutes:g}"] if args.tune_minutes > 0 else []
    tune_cmd += ["--lr", f"{args.lr:g}"] if args.lr is not None else []
    tune_cmd += ["--distil-hidden", f"{args.distil_hidden:g}"] if args.distil_hidden is not None else []
    timing = work_root / "tune-minutes.json"
    if not (tuned_dir / "tune.json").is_file():
        resume = ["--resume"] if (tuned_dir / "checkpoint.pt").is_file() else []
        start = time.perf_counter()
        subprocess.run([simq, *tune_cmd[1:], *resume], check=True)
        timing.write_text(json.dumps({"minutes": (time.perf_counter() - start) / 60, "command": tune_cmd}))
    tuning = json.loads(timing.read_text()) if timing.is_file() else {}
    tune_minutes = tuning.get("minutes", float("nan"))
    tune_cmd = tuning.get("command", tune_cmd)  # how a tuned folder made beforehand was made
    record = json.loads((tuned_dir / "tune.json").read_text())
    compile_out = work_root / ("compile" if on_ort else f"compile-{args.target}")
    compile_cmd = ["simq", "compile", str(tuned_dir), *([] if on_ort else ["--target", args.target]), "--budget", str(args.budget), "--max-accuracy-drop", "1", "--out", str(compile_out)]
    compile_timing = compile_out.with_name(f"{compile_out.name}-minutes.json")
    if not (compile_out / "summary.json").is_file():
        resume = ["--resume"] if (compile_out / "simq.sqlite").is_file() else []
        start = time.perf_counter()
        subprocess.run([simq, *compile_cmd[1:], *resume], check=True)
        compile_timing.write_text(json.dumps({"minutes": (time.perf_counter() - start) / 60, "resumed": bool(resume)}))
    compile_record = json.loads(compile_timing.read_text()) if compile_timing.is_file() else {"minutes": float("nan")}
    compile_minutes = compile_record["minutes"]
    summary = json.loads((compile_out / "summary.json").read_text())

    work = work_root / ("artifacts" if on_ort else f"artifacts-{args.target}")
    work.mkdir(parents=True, exist_ok=True)
    original, original_job = case_of("original", JobSpec(model=args.model, target=args.target), zoo)
    tuned, tuned_job = case_of("tuned", JobSpec(model=str(tuned_dir), target=args.target), zoo)
    layers, trained_drops = len(depth_knobs(original)), len(depth_knobs(tuned))
    deepest = min(2, trained_drops)
    entries = [Entry("original FP32", original.target.lower(original.model, work / "original"))]
    entries.append(Entry(f"original: {bar}", original_job.baselines[bar](work / "bar")))
    entries.append(Entry("tuned FP32 (no pruning)", tuned.target.lower(tuned.model, work / "tuned")))
    entries.append(Entry(f"tuned: {bar} (what tuning alone buys)", tuned_job.baselines[bar](work / "tuned-bar")))
    for case, label, depths in ((original, "untuned", (0, deepest)), (tuned, "tuned", range(trained_drops + 1))):
        for drops in depths:
            for width in WIDTHS:
                label_ = f"SimQ {label}: heads = FFN {width:.0%}, {layers - drops} layers + INT8"
                print(f"building {label_}", file=sys.stderr, flush=True)
                entries.append(simq_entry(case, label_, grid_config(case, width, drops), work))
    for width in (0.75, 0.5):
        label_ = f"SimQ tuned: heads = FFN {width:.0%}, {layers - deepest} layers + INT4 weights"
        entries.append(simq_entry(tuned, label_, grid_config(tuned, width, deepest) | {k: v for k, v in uniform(tuned, "int4w").items() if k.startswith("quant.")}, work))
    # What INT8 costs the small tuned sub-networks: the most a quantization-aware last epoch could buy.
    qat_pairs = []
    for width, drops in ((0.75, deepest), (0.5, deepest), (1.0, trained_drops)):
        fp32_label = f"SimQ tuned: heads = FFN {width:.0%}, {layers - drops} layers, FP32"
        config = grid_config(tuned, width, drops) | {k: v for k, v in uniform(tuned, "fp32").items() if k.startswith("quant.")}
        entries.append(simq_entry(tuned, fp32_label, config, work))
        qat_pairs.append((f"SimQ tuned: heads = FFN {width:.0%}, {layers - drops} layers + INT8", fp32_label))
    headline = fastest_within(summary, 1.0)
    if headline is not None:
        published = f"simq compile #{headline['id']} (published: the fastest within 1 point)"
        entries.append(Entry(published, Artifact.load_index(compile_out / "pareto" / str(headline["id"])), simq=True))
    # Every model scored on the same rows (the CSV splits are the zoo's, in order), against the original.
    score_all(original, entries)
    fp32 = entries[0]
    lengths = TOKENS if any(d.is_integer and not d.mask for d in sir.input_domains(original.model)) else (None,)
    shape = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in original.feed.items())
    timed_at = f"batch 1 at {' and '.join(map(length_label, lengths))}" if lengths != (None,) else f"batch 1 ({shape})"
    timings = time_lengths(original, entries, lengths, args.rounds)
    for e in entries:
        e.ratios["FP32"], e.ratios["bar"] = (timings[(lengths[0], 1)][e.label][k] for k in ("FP32", "bar"))

    def best(prefix: str) -> Entry | None:
        pool = [e for e in entries if e.label.startswith(prefix) and within_one_point(e.validation, fp32.validation)]
        return min(pool, key=lambda e: e.ratios["FP32"][0]) if pool else None

    chosen = {label: best(f"SimQ {label}") for label in ("untuned", "tuned")}
    def by_length(e: Entry, tokens: int) -> list[str]:
        runs = [timings[(tokens, run)][e.label] for run in range(1, RUNS + 1)]
        return [fmt_ratio(runs[0]["FP32"]), "; ".join(fmt_ratio(r["bar"]) for r in runs)]

    rows = [
        [e.label + (" **(chosen)**" if e in chosen.values() else ""), fmt_delta(e.validation, fp32.validation), fmt_delta(e.test, fp32.test),
         *(cell for tokens in lengths for cell in by_length(e, tokens)), f"{e.artifact.size_bytes / fp32.artifact.size_bytes:.3f}"]
        for e in entries
    ]  # fmt: skip
    suffix = "" if on_ort else "_openvino"
    image = f"tune_{'minilm' if main_model else name}{suffix}.png"
    plot(entries, fp32, summary, ROOT / "docs" / "img" / image)
    half = next(e for e in entries if e.label == f"SimQ tuned: heads = FFN 50%, {layers - deepest} layers + INT8")
    half_untuned = next(e for e in entries if e.label == f"SimQ untuned: heads = FFN 50%, {layers - deepest} layers + INT8")
    lines = []
    picks = {**chosen, "published by simq compile": next((e for e in entries if e.label.startswith("simq compile #")), None)}
    for label, e in picks.items():
        if e is None:
            lines.append(f"- {label}: no {'sub-network' if label in chosen else 'model'} within 1 point on validation.")
            continue
        d, h = paired(e.test, fp32.test)
        faster = "; ".join(
            f"{length_label(tokens)} " + ", ".join(f"{1 / timings[(tokens, run)][e.label]['bar'][0]:.2f}x" for run in range(1, RUNS + 1)) for tokens in lengths
        )
        lines.append(
            f"- {label}: {e.label}, {e.ratios['FP32'][0]:.3f}x FP32, faster than the bar by ({faster}; run 1, run 2), "
            f"{fp32.artifact.size_bytes / e.artifact.size_bytes:.1f}x smaller than FP32, test {d:+.2f} ± {h:.2f} points."
        )
    by_label = {e.label: e for e in entries}
    int8_cost = [
        f"- INT8 against FP32, the same tuned sub-network ({int8.removeprefix('SimQ tuned: ').removesuffix(' + INT8')}): "
        f"{fmt_delta(by_label[int8].validation, by_label[fp].validation)} validation points, {fmt_delta(by_label[int8].test, by_label[fp].test)} test "
        "(what a quantization-aware last epoch could win back at most)."
        for int8, fp in qat_pairs
    ]
    curves = "\n".join(f"| {c['epoch']} | {c['loss']:.3f} | {c['validation_largest']:.2f} | {c['validation_smallest']:.2f} |" for c in record["curves"])
    sizes = f"validation {len(original.validation[1]):,} examples, test {len(original.test[1]):,}"
    path = ROOT / "docs" / ("TUNE" + ("" if main_model else f"_{name}") + suffix + ".md")
    others = sorted(p.stem.removeprefix("TUNE_") for p in (ROOT / "docs").glob("TUNE_*.md") if p != path)
    doc = f"""# Tuning{'' if main_model else f' {name}'}: elastic fine-tuning, then compile{'' if on_ort else ' for ' + args.target}

Written by `python tools/bench_tune.py{'' if main_model else ' ' + args.model}{'' if on_ort else ' --target ' + args.target} --epochs {args.epochs}{f' --lr {args.lr:g}' if args.lr else ''}{f' --distil-hidden {args.distil_hidden:g}' if args.distil_hidden is not None else ''} --budget {args.budget} --rounds {args.rounds}` on {cpu_name()}, 2 threads,
{timed_at}.{''.join(f' Also: [{o}](TUNE_{o}.md).' for o in others) if main_model else ' The main model: [minilm-tweets](TUNE.md).'}

## Tuning

`{' '.join(tune_cmd).replace(str(ROOT) + '/', '')}`: {record['epochs_done']} epoch(s) in {tune_minutes:.1f} min{' (stopped at the time limit)' if record['stopped_early'] else ''}, on the
{record['data']['train']} train examples only (calibration, validation and test checked disjoint by content). Layers are dropped
in the order {', '.join(record['orders']['depth'])} (least change to the residual stream first).

| epoch | loss | validation % (largest) | validation % (smallest: {record['options']['min_width']:.0%} of every width, {record['options']['min_depth']:.0%} of the layers) |
|---|---|---|---|
{curves}

## Sub-networks with and without tuning (same run)

Accuracy change against the original FP32 model in points (paired 95 % interval; {sizes}). Latency: ratios to the original FP32 model and to {bar} of the original
({bar_text}: the bar), {args.rounds} interleaved rounds, every session with
{timing_text()}, bootstrap 95 % intervals; at {' and '.join(map(length_label, lengths))} (batch 1{", every position attended: real examples' tokens repeated" if lengths != (None,) else ""}), each timed in {RUNS} runs one after the other
(× FP32: the first run; × the bar: both). "Chosen": the fastest within 1 point of the original on validation
by the rule `simq compile` publishes by (the one-sided 90 % bound of the paired drop at most 1 point).

{table(["model", "Δ validation", "Δ test", *(f"{h}, {length_label(t)}" for t in lengths for h in ("× FP32", "× the bar (run 1; run 2)")), "size × FP32"], rows)}

{chr(10).join(lines)}
{chr(10).join(int8_cost)}
- Heads 50 % + FFN 50 % + {layers - deepest} of {layers} layers + INT8: tuned {fmt_delta(half.test, fp32.test)} test points, untuned {fmt_delta(half_untuned.test, fp32.test)}.

## The search on the tuned model

`{' '.join(compile_cmd).replace(str(ROOT) + '/', '')}` ({compile_minutes:.1f} min; tune + compile {tune_minutes + compile_minutes:.1f} min):
{summary.get('headline') or 'no verdict'}{(chr(10) + chr(10) + compile_record['note']) if 'note' in compile_record else ''}

![fronts with and without tuning](img/{image})
"""
    path.write_text(doc)
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


def length_label(tokens: int | None) -> str:
    return f"{tokens} tokens" if tokens else "batch 1"


def time_lengths(case: Case, entries: list[Entry], lengths: tuple, rounds: int) -> dict[tuple, dict[str, dict[str, tuple[float, float, float]]]]:
    """Ratios to FP32 and to the bar (entries 0 and 1) by (tokens, run) and label: every sequence
    length (None: the case's own feed, for a model without tokens) timed `RUNS` times in turn."""
    domains, names = sir.input_domains(case.model), list(case.feed)
    timings = {}
    for tokens in lengths:
        if tokens is not None:
            case.feed = timing_feed(case.test[0], domains, {name: (1, tokens) for name in names})
        for run in range(1, RUNS + 1):
            print(f"timing at {length_label(tokens)}, run {run}", file=sys.stderr, flush=True)
            time_all(case, entries, [entries[0].label, entries[1].label], rounds)
            timings[(tokens, run)] = {e.label: {"FP32": e.ratios[entries[0].label], "bar": e.ratios[entries[1].label]} for e in entries}
    return timings


def plot(entries: list[Entry], fp32: Entry, summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, colour in (("untuned", "tab:gray"), ("tuned", "tab:blue")):
        points = [(e.ratios["FP32"][0], -paired(e.test, fp32.test)[0]) for e in entries if e.label.startswith(f"SimQ {label}")]
        ax.scatter(*zip(*points), c=colour, s=25, label=f"SimQ sub-networks, {label} (test)")
    original = next((r for r in summary["rows"] if r["config"] == "original (before tuning)"), None)
    front = [r for r in summary["rows"] if r["kind"] == "candidate" and r["accuracy"] is not None]
    if front and original is not None:  # the run's ratios are to the tuned FP32 model, the same architecture
        ax.scatter([r["latency_ratio"] for r in front], [original["accuracy"] - r["accuracy"] for r in front], marker="x", c="tab:green", s=40,
                   label="simq compile on the tuned model (test)")  # fmt: skip
    for e, marker in ((entries[1], "s"), (entries[3], "^")):
        ax.scatter([e.ratios["FP32"][0]], [-paired(e.test, fp32.test)[0]], marker=marker, c="tab:red", s=60, label=e.label)
    ax.scatter([1.0], [0.0], marker="*", c="black", s=120, label="original FP32")
    ax.axhline(1.0, ls="--", c="0.4", lw=0.8)
    ax.set_xlabel("latency × original FP32 (same run)")
    ax.set_ylabel("points below the original FP32 (test)")
    ys = [y for collection in ax.collections for _, y in collection.get_offsets()]
    ax.set_ylim(min(ys) - 0.5, min(max(ys) + 0.5, 8))  # models more than 8 points down are off the plot
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
