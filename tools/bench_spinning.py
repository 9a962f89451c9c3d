"""Thread spinning and timing: which session setting, with several ONNX Runtime sessions
interleaved in one process, gives the latency ratios a deployment gets.

SimQ times every candidate interleaved with FP32 in one process. ORT's intra-op workers spin
(`session.intra_op.allow_spinning`, on by default): between the ops of a run, which saves a
thread wake-up per op, and after it, where an idle session's spinning worker takes the cores of
the session being timed. Three settings, each for every session of one process:

- **on**: ORT's default.
- **off**: no spinning at all; every op of a run wakes the other worker.
- **on, stopped after each run**: spinning during a run, stopped when the run returns
  (`session.force_spinning_stop`), so that no idle session spins.

Against them, the **deployment**: one live session at a time with ORT's defaults, as a user's
process runs one model (per round each model's session is opened, warmed, timed and closed).

Models (minilm-tweets, as the ort-cpu target lowers them): FP32, the recipe users run (ORT's
transformers optimizer + per-tensor dynamic INT8), SimQ unpruned dynamic INT8, heads = FFN 50 %,
4 of 6 layers. Every figure is a ratio to FP32 in the same round (median of rounds, 95 % interval),
two runs each. Writes docs/SPINNING.md.

Usage: python tools/bench_spinning.py [--rounds N] [--seq 64 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, one_live_session, ratio_cell, table  # noqa: E402
from bench_lowering import _grid_config  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.data import timing_feed  # noqa: E402
from simq.search import JobSpec, prepare_job  # noqa: E402
from simq.targets import interleave, round_ratios  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 5
SETTINGS: dict[str, dict[str, str]] = {
    "on": {},
    "off": {"session.intra_op.allow_spinning": "0"},
    "on, stopped after each run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
}
DEPLOYMENT = "deployment (one live session, defaults)"
#: Intra-op threads of every session timed here, interleaved or deployed alike.
THREADS = 2
GRID = {"SimQ unpruned": (1.0, 1.0, 0), "SimQ heads = FFN 50 %": (0.5, 0.5, 0), "SimQ 4 of 6 layers": (1.0, 1.0, 2)}


def _session(path: Path, config: Mapping[str, str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = THREADS, 1, 3
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _models(zoo: Zoo, seq: int, work: Path) -> tuple[dict[str, Path], dict]:
    """FP32, the recipe and SimQ's grid points, lowered as `simq compile` lowers them; the feed."""
    job = prepare_job(JobSpec("zoo:minilm-tweets", seq_len=seq), zoo).job
    target, pipeline = job.target, job.pipeline
    models = {
        "FP32": target.lower(job.model, work / "fp32").path,
        "the recipe": job.baselines["ORT optimizer + dynamic INT8"](work / "recipe").path,
    }
    for label, (heads, ffn, drops) in GRID.items():
        models[label] = target.lower(pipeline.build(_grid_config(pipeline, heads, ffn, drops)), work / label.replace(" ", "-")).path
    feed = timing_feed(zoo.data("minilm-tweets", "test").inputs, sir.input_domains(job.model), job.structure.signature)
    return models, feed


def _ratios(times: Mapping[str, list[float]]) -> dict[str, list[float]]:
    return {name: round_ratios(ms, times["FP32"], PER_ROUND) for name, ms in times.items() if name != "FP32"}


def interleaved(models: Mapping[str, Path], feed: dict, config: Mapping[str, str], rounds: int) -> tuple[dict, list[float]]:
    """Every model's session live in one process, timed in interleaved rounds: ratios to FP32 per
    round, and the recipe's per-call latencies."""
    sessions = {name: _session(path, config) for name, path in models.items()}
    times = interleave({n: (lambda s=s: s.run(None, feed)) for n, s in sessions.items()}, rounds=rounds, per_round=PER_ROUND, rewarm=3)
    return _ratios(times), times["the recipe"]


def deployed(models: Mapping[str, Path], feed: dict, rounds: int) -> tuple[dict, list[float]]:
    """One live session at a time with ORT's defaults (`one_live_session`, `THREADS` threads): ratios to
    FP32 per round, and the recipe's per-call latencies."""
    times = one_live_session({name: (path, feed, THREADS) for name, path in models.items()}, rounds, PER_ROUND)
    return _ratios(times), times["the recipe"]


def _section(seq: int, runs: dict[str, list[tuple[dict, list[float]]]], names: list[str]) -> tuple[str, dict[str, float]]:
    """One sequence length's tables, and per setting the largest difference of its ratios from the
    deployment's (both runs)."""
    rows = []
    for name in names:
        for setting, pair in runs.items():
            rows.append([name, setting] + [ratio_cell(ratios[name]) for ratios, _ in pair])
    tails = []
    for setting, pair in runs.items():
        for run, (_, recipe_ms) in enumerate(pair, 1):
            p10, p50, p90 = np.percentile(recipe_ms, [10, 50, 90])
            tails.append([setting, run, f"{p10:.2f}", f"{p50:.2f}", f"{p90:.2f}", f"{p90 / p50:.2f}"])
    apart: dict[str, float] = {}
    for setting, pair in runs.items():
        if setting == DEPLOYMENT:
            continue
        apart[setting] = max(
            abs(statistics.median(ratios[name]) / statistics.median(reference[name]) - 1)
            for (ratios, _), (reference, _) in zip(pair, runs[DEPLOYMENT])
            for name in names
        )
    text = f"""## {seq} tokens

Ratio to FP32 in the same round (median of rounds, 95 % interval), two runs in turn.

{table(["model", "setting", "run 1", "run 2"], rows)}

The recipe's per-call latency (ms) under each setting:

{table(["setting", "run", "p10", "median", "p90", "p90 / median"], tails)}

Largest difference of a setting's ratio from the deployment's (same run, every model): {", ".join(f"{s} {d:.1%}" for s, d in apart.items())}."""
    return text, apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seq", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    zoo, sections, verdicts = Zoo(), [], {}
    started = time.time()
    for seq in args.seq:
        models, feed = _models(zoo, seq, ROOT / ".bench" / "spinning" / str(seq))
        runs: dict[str, list] = {setting: [] for setting in (*SETTINGS, DEPLOYMENT)}
        for run in range(2):
            order = list(SETTINGS) if run == 0 else list(SETTINGS)[::-1]
            for setting in order:
                runs[setting].append(interleaved(models, feed, SETTINGS[setting], args.rounds))
                print(seq, setting, run + 1, {n: f"{statistics.median(r):.3f}" for n, r in runs[setting][-1][0].items()}, file=sys.stderr, flush=True)
            runs[DEPLOYMENT].append(deployed(models, feed, args.rounds))
            print(seq, DEPLOYMENT, run + 1, {n: f"{statistics.median(r):.3f}" for n, r in runs[DEPLOYMENT][-1][0].items()}, file=sys.stderr, flush=True)
        text, verdicts[seq] = _section(seq, runs, [n for n in models if n != "FP32"])
        sections.append(text)
    worst = {s: max(v[s] for v in verdicts.values()) for s in SETTINGS}
    closest = min(worst, key=worst.get)
    doc = f"""# Measuring latency: thread spinning, and what SimQ times under

Generated by `python tools/bench_spinning.py --rounds {args.rounds} --seq {' '.join(map(str, args.seq))}` on {cpu_name()}, 2 intra-op threads,
batch 1, minilm-tweets, in {(time.time() - started) / 60:.0f} min.

ONNX Runtime's intra-op workers spin (`session.intra_op.allow_spinning`, on by default): between the
ops of a run, which saves a thread wake-up per op, and after it. SimQ times candidates interleaved
with FP32 in one process, where an idle session's spinning worker takes the cores of the session
being timed. Each setting below is applied to every session of one process: ORT's default (on),
spinning off, and spinning on but stopped when each run returns (`session.force_spinning_stop`), so
that no idle session spins. The deployment is one live session at a time with ORT's defaults, as a
user's process runs one model: per round each model's session is opened, warmed (10 calls), timed
({PER_ROUND} calls) and closed. Models: FP32, the recipe (ORT's transformers optimizer + per-tensor
dynamic INT8), SimQ's unpruned dynamic-INT8 model and two of its pruned sub-networks, lowered as
`simq compile` lowers them.

{chr(10).join(s + chr(10) for s in sections)}
Read off: across both lengths and runs, the ratios measured with every session's spinning setting
"{closest}" differ least from the deployment's (at most {worst[closest]:.1%}; {", ".join(f"{s}: {d:.1%}" for s, d in worst.items() if s != closest)}).
`OrtCpuTarget.timing_settings` names the setting SimQ times under; manifests record it apart from
the runtime settings a deployment uses.
"""
    (ROOT / "docs" / "SPINNING.md").write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
