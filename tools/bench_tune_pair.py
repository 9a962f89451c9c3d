"""Two arms of `simq tune` side by side, sub-network by sub-network: what a tuning option or a
change to tuning buys (for instance `--distil-hidden`, or the time-limit-aware schedule against the
code before it). Give the tuned folders in pairs, one pair per seed (first arm, second arm, then
the next seed's pair); all come from the same zoo model. Every sub-network of the grid (heads = FFN
at 100/75/50 %, by every depth all runs trained, INT8 as the ort-cpu target lowers it) is built
from each run and scored on the zoo's validation and test splits and its spare pool, paired per example: each arm
against the original FP32 model (averaged over seeds), the second arm against the first per seed,
and pooled over seeds (each example's difference averaged over the seeds).
Writes docs/DOC (default DISTIL.md), and every per-example score to WORK/scores.npz.

Usage: python tools/bench_tune_pair.py FIRST SECOND [FIRST SECOND ...] [--labels A,B] [--doc NAME.md] [--about TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, shown_path, table  # noqa: E402
from bench_acceptance import encode_spare  # noqa: E402
from bench_lowering import Entry, fmt_delta, per_example, score_all, simq_entry  # noqa: E402
from bench_tune import WIDTHS, case_of, depth_knobs, grid_config  # noqa: E402

from simq.search import JobSpec  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _options(folder: Path) -> str:
    record = json.loads((folder / "tune.json").read_text())
    o = record["options"]
    limit = f", time limit {o['time_limit'] / 60:g} min" if o.get("time_limit") else ""
    stopped = f" (stopped at its {record['stopped_early']})" if record.get("stopped_early") else ""
    return (
        f"{record['epochs_done']} of {o['epochs']} epochs{stopped}, lr {o['lr']:g}, distil_hidden {o.get('distil_hidden', 0.0):g}{limit}, "
        f"random_subnets {o.get('random_subnets', 2)}, seed {o['seed']}, validation of the largest {record['curves'][-1]['validation_largest']:.2f} %"
        f"{_time(folder, record)}"
    )


def _time(folder: Path, record: dict) -> str:
    """The run's minutes and its mean seconds per training step (from its checkpoint)."""
    if not record.get("seconds"):
        return ""
    import torch

    state = torch.load(folder / "checkpoint.pt", weights_only=False)["state"] if (folder / "checkpoint.pt").is_file() else {}
    spent, steps = state.get("step_seconds", (0.0, 0))
    per_step = f", {spent / steps:.2f} s per step" if steps else ""
    return f"; {record['seconds'] / 60:.1f} min in all{per_step}"


def _mean(entries: list[Entry], split: str) -> np.ndarray:
    """Each example's score averaged over the seeds' runs."""
    return np.mean([getattr(e, split) for e in entries], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="simq tune output folders in pairs: first arm, second arm, one pair per seed")
    parser.add_argument("--labels", default="first,second", help="names for the two arms")
    parser.add_argument("--doc", default="DISTIL.md", help="the table's file under docs/")
    parser.add_argument("--about", default="", help="a sentence saying how the two arms differ")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "distil")
    args = parser.parse_args()
    if len(args.folders) % 2:
        parser.error("give the tuned folders in pairs: first arm, second arm (one pair per seed)")
    names = args.labels.split(",")
    pairs = [tuple(args.folders[i : i + 2]) for i in range(0, len(args.folders), 2)]
    zoo = Zoo()
    source = json.loads((args.folders[0] / "tune.json").read_text())["source"]
    original, _ = case_of("original", JobSpec(model=source, baselines=False), zoo)
    fp32 = Entry("original FP32", original.target.lower(original.model, args.work / "original"))
    layers = len(depth_knobs(original))
    runs = {
        (name, seed): case_of(f"{name}-{seed}", JobSpec(model=str(folder), baselines=False), zoo)[0]
        for seed, pair in enumerate(pairs) for name, folder in zip(names, pair)
    }  # fmt: skip
    drops = min(len(depth_knobs(case)) for case in runs.values())
    grid = [(width, d) for d in range(drops + 1) for width in WIDTHS]
    entries: dict[tuple[str, int, float, int], Entry] = {}
    for (name, seed), case in runs.items():
        for width, d in grid:
            label = f"{name} (pair {seed + 1}): heads = FFN {width:.0%}, {layers - d} layers + INT8"
            print(f"building {label}", file=sys.stderr, flush=True)
            entries[name, seed, width, d] = simq_entry(case, label, grid_config(case, width, d), args.work / f"{name}-{seed}")
    scored = [fp32, *entries.values()]
    score_all(original, scored)
    spare_pool = encode_spare(zoo)
    spare = {e.label: per_example(original, e.artifact, spare_pool, None) for e in scored}
    args.work.mkdir(parents=True, exist_ok=True)
    np.savez(  # every score per example, for later replays (e.g. acceptance on tuned sub-networks)
        args.work / "scores.npz", labels=np.array([e.label for e in scored]),
        keys=np.array([json.dumps(k) for k in [("original", -1, 1.0, 0), *entries]]),
        **{split: np.array([getattr(e, split) for e in scored]) for split in ("validation", "test")},
        spare=np.array(list(spare.values())),
    )  # fmt: skip
    first, second = names
    seeds = range(len(pairs))
    rows = []
    for width, d in grid:
        arm = {name: [entries[name, seed, width, d] for seed in seeds] for name in names}
        row = [f"heads = FFN {width:.0%}, {layers - d} layers"]
        for split in ("validation", "test"):
            a, b = _mean(arm[first], split), _mean(arm[second], split)
            each = "; ".join(fmt_delta(getattr(y, split), getattr(x, split)) for x, y in zip(arm[first], arm[second]))
            row += [fmt_delta(a, getattr(fp32, split)), fmt_delta(b, getattr(fp32, split)), each, f"**{fmt_delta(b, a)}**"]
        held = {name: np.mean([spare[e.label] for e in arm[name]], axis=0) for name in names}
        row.append(f"**{fmt_delta(held[second], held[first])}**")
        rows.append(row)
    sizes = f"validation {len(original.validation[1]):,} examples, test {len(original.test[1]):,}"
    about = f"\n{args.about}\n" if args.about else ""
    folders = " ".join(str(shown_path(f)) for f in args.folders)
    listing = "\n".join(
        f"- pair {seed + 1}, {name}: `{folder.name}` ({_options(folder)})" for seed, pair in enumerate(pairs) for name, folder in zip(names, pair)
    )  # fmt: skip
    headers = []
    for split in ("validation", "test"):
        headers += [f"Δ {split}, {first}", f"Δ {split}, {second}", f"{split}: {second} − {first}, each pair", f"{split}: {second} − {first}, pooled"]
    headers.append(f"spare pool ({len(spare['original FP32']):,}): {second} − {first}, pooled")
    doc = f"""# Tuning options side by side: {first} against {second}

Generated by `python tools/bench_tune_pair.py {folders} --labels {args.labels} --doc {args.doc}` on {cpu_name()}.
{about}
{listing}

Every sub-network INT8 (dynamic, as ort-cpu lowers it), built from each tuned model as `simq compile`
would (first-k widths, its trained depth order). Accuracy change in points with paired 95 % intervals
({sizes} of {source}): each arm against the original FP32 model (each example's score averaged
over the {len(pairs)} pair(s)), and {second} against {first} on the same examples, for each pair and pooled
(each example's difference averaged over the pairs; the interval counts the examples, not the
seeds); last, pooled on the zoo's spare pool (allowed tweets no split uses). Bold: positive means
{second} is better.

{table(["sub-network", *headers], rows)}
"""
    path = ROOT / "docs" / args.doc
    path.write_text(doc)
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
