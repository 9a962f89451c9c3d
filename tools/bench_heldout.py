"""Does "within N points" hold on data the run never saw? Every published model of finished
minilm-tweets runs, scored against the FP32 model on the zoo's spare pool (allowed corpus rows no
split uses: neither the search nor the final pass ever saw them), paired per tweet. Also: each
run's fastest published model within the limit (what its headline names), and how close its test
and held-out drops come to the limit. Writes docs/HELDOUT.md (or --out).

Scores are kept by artifact digest under --cache, so a rerun scores only new models.

Usage: python tools/bench_heldout.py OUT [OUT ...] [--limit 1] [--cache DIR] [--out DOC]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, fastest_within, run_name, shown_path, table  # noqa: E402
from bench_acceptance import at_the_limit, encode_spare  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.eval import classifier_logits, paired_drop  # noqa: E402
from simq.targets import Artifact, TargetRegistry  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "HELDOUT.md"


def correct(run, inputs, labels):
    return 100.0 * (classifier_logits(run, inputs, 64, "attention_mask").argmax(-1) == labels)


def shown(out: Path, outs: list[Path]) -> str:
    """A run folder as the command line named it from the checkout (no machine path)."""
    parts = out.resolve().parts
    return str(Path(*parts[parts.index(".bench") :])) if ".bench" in parts else run_name(out, outs)


def scored(target, artifact: Artifact, inputs, labels, cache: Path) -> np.ndarray:
    """`correct` for an artifact, kept by its digest."""
    path = cache / f"{artifact.digest()}.npy"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, correct(target.load(artifact), inputs, labels))
    return np.load(path)


def reachable(fp32: np.ndarray, model: np.ndarray, sizes: tuple[int, ...], limit: float) -> float:
    """The chance that a model exactly at `limit`, changing as many verdicts as `model` does,
    reads within 0.5 of it on every split of `sizes` (independent draws): how often "spends the
    headroom" can be confirmed at all at these split sizes."""
    discordance = float(np.mean(fp32 != model))
    return float(np.prod([at_the_limit(discordance, n, limit)[1] for n in sizes]))


def speedup(summary: dict) -> str:
    """The run's headline speed-up over its best baseline within the limit, as it printed it."""
    said = re.search(r"(\d+\.\d+)x faster \(([^)]*)\)", summary.get("headline") or "")
    return f"{said.group(1)}x ({said.group(2)})" if said else "–"


def invocation(out: Path, name: str) -> str:
    """The run's `simq compile` options that matter here, from its recipe.yaml."""
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    model = recipe["model"] if str(recipe["model"]).startswith("zoo:") else f"{Path(recipe['model']).name}/ (simq tune output)"
    target = f" --target {recipe['target']}" if recipe.get("target", "ort-cpu") != "ort-cpu" else ""
    limit = f" --time-limit {recipe['time-limit']:g}" if recipe.get("time-limit") else ""
    return f"{name}: `simq compile {model}{target} --budget {recipe['budget']} --seed {recipe['seed']}{limit}`"


def confidence(summary: dict) -> str:
    """The confidence of the run's accuracy limit, as its summary states it."""
    stated = next((m for s in summary["settings"] if (m := re.search(r"at (\d+)% confidence", s))), None)
    return f"{stated.group(1)} %" if stated else "?"


def written(doc: Path) -> str:
    """The --out option as the command line gave it, or nothing for the default."""
    if doc.resolve() == DOC.resolve():
        return ""
    return f" --out {shown_path(doc)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", type=Path, nargs="+", help="--out folders of finished runs on zoo:minilm-tweets")
    parser.add_argument("--limit", type=float, default=1.0, help="the run's --max-accuracy-drop")
    parser.add_argument(
        "--cache", type=Path, default=ROOT / ".bench" / "heldout-scores", help="scores kept by artifact digest"
    )
    parser.add_argument("--out", type=Path, default=DOC, help="the document to write")
    args = parser.parse_args()
    zoo = Zoo()
    inputs, labels = encode_spare(zoo)
    fp32_on: dict[str, np.ndarray] = {}  # the FP32 model's verdicts, by target: each run is paired on its own runtime
    sizes = (len(zoo.data("minilm-tweets", "test").labels), len(labels))
    rows, fastest_rows, beyond, total, near, chances, fingerprints = [], [], 0, 0, 0, [], set()
    for out in args.outs:
        summary = json.loads((out / "summary.json").read_text())
        fingerprints.add(summary["fingerprint"])
        target_name = yaml.safe_load((out / "recipe.yaml").read_text()).get("target", "ort-cpu")
        target = TargetRegistry().get(target_name)
        if target_name not in fp32_on:
            with tempfile.TemporaryDirectory() as tmp:
                fp32_on[target_name] = correct(target.load(target.lower(sir.load("zoo:minilm-tweets", zoo=zoo), Path(tmp))), inputs, labels)
        fp32 = fp32_on[target_name]
        published = [r for r in summary["rows"] if r["kind"] == "candidate" and r.get("artifact")]
        drops, correct_on = {}, {}
        for row in published:
            artifact = Artifact.load_index(out / "pareto" / str(row["id"]))
            correct_on[row["id"]] = scored(target, artifact, inputs, labels, args.cache)
            drop = drops[row["id"]] = paired_drop(fp32, correct_on[row["id"]])
            total += 1
            beyond += drop.estimate > args.limit + 0.5
            rows.append([run_name(out, args.outs), row["id"], row["config"], f"{row['search_accuracy_bound']:+.2f}", f"{row['accuracy_drop']:+.2f}",
                         f"{drop.estimate:+.2f} [{drop.low:+.2f}, {drop.high:+.2f}]"])  # fmt: skip
        best = fastest_within(summary, args.limit)
        if best is not None:
            held = drops[best["id"]].estimate
            close = all(abs(args.limit - d) <= 0.5 for d in (best["accuracy_drop"], held))
            near += close
            chances.append(reachable(fp32, correct_on[best["id"]], sizes, args.limit))
            fastest_rows.append([run_name(out, args.outs), confidence(summary), best["id"], f"{best['latency_ratio']:.2f}", f"{best['search_accuracy_bound']:+.2f}",
                                 f"{best['accuracy_drop']:+.2f}", f"{held:+.2f}", "yes" if close else "no", f"{100 * chances[-1]:.0f} %", speedup(summary)])  # fmt: skip
    doc = f"""# Held-out check: published models on tweets no run ever saw

Generated by `python tools/bench_heldout.py {" ".join(shown(o, args.outs) for o in args.outs)}{written(args.out)}` on {cpu_name()}
(the runs' fingerprints: {", ".join(f"`{f}`" for f in sorted(fingerprints))}).

Runs: {"; ".join(invocation(o, run_name(o, args.outs)) for o in args.outs)}.

Every published model of the runs, scored on the zoo's spare pool ({len(labels)} allowed tweets outside
every split, balanced), its drop below the FP32 model paired per tweet with the 95 % interval. A
model is "beyond" when its held-out drop exceeds the limit ({args.limit:g} point) by more than 0.5.

{table(["run", "model", "configuration", "validation bound", "test drop", "held-out drop [95 %]"], rows)}

Beyond the limit by more than 0.5 point on held-out tweets: {beyond} of {total} published models.

## The fastest published model of each run

The model each run's headline names: the fastest whose validation bound is within the limit. "Spends
the headroom" when its drop on test and on the held-out tweets are both within 0.5 point of the
limit (neither beyond it by more, nor further inside it). "At the limit": the chance that a model
whose true drop is exactly the limit, changing as many verdicts as this one does on the held-out
tweets, reads within 0.5 of it on both the test split ({sizes[0]}) and the held-out tweets ({sizes[1]}):
the most a check of this size can confirm (docs/ACCEPTANCE.md).

{table(["run", "confidence", "model", "latency × FP32", "validation bound", "test drop", "held-out drop", "spends the headroom", "at the limit", "headline: faster than the best baseline"], fastest_rows)}

Spends the headroom: {near} of {len(fastest_rows)} runs{f"; a model exactly at the limit would be confirmed so {100 * min(chances):.0f}–{100 * max(chances):.0f} % of the time" if chances else ""}.
"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
