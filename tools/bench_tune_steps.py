"""What a `simq tune` step costs: the sandwich step (the largest network, the smallest and two
random sub-networks, forward and backward, then the optimizer step) with sub-networks masked
(full-width matrix products, pruned heads and neurons zeroed, dropped layers computed) or sliced
(first-k rows and columns only, dropped layers not run), and with the embedding tables trained or
frozen. Every arm runs the same batches and sub-networks, step by step in rotating order, in one
process; per-step ratios to the masked, embeddings-trained step (what `simq tune` did before),
median with a bootstrap 95 % interval. Writes docs/TUNE_STEPS.md.

Usage: python tools/bench_tune_steps.py [MODEL] [--steps N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name, table  # noqa: E402
from bench_lowering import bootstrap, fmt_ratio  # noqa: E402

from simq import ir as sir  # noqa: E402
from simq.search import JobSpec  # noqa: E402
from simq.search._examples import examples_for  # noqa: E402
from simq.tune import TuneOptions  # noqa: E402
from simq.tune._batches import batches_of, feed_of  # noqa: E402
from simq.tune._tune import elastic_network, embedding_tables, sandwich_step  # noqa: E402
from simq.zoo import Zoo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARMS = (("masked", True), ("sliced", True), ("masked", False), ("sliced", False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="zoo:minilm-tweets")
    parser.add_argument("--steps", type=int, default=24, help="timed steps per arm (after 2 untimed)")
    args = parser.parse_args()
    options = TuneOptions()
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    zoo = Zoo()
    name = args.model.removeprefix("zoo:")
    source = zoo.torch_source(name)
    examples, _, _ = examples_for(JobSpec(model=args.model), sir.load(args.model, zoo=zoo), zoo.path(name), zoo)
    train, calibration = examples.role("train"), examples.role("calibration")
    _, _, elastic = elastic_network(source, calibration)
    source.module.eval()
    elastic.reorder(({k: torch.from_numpy(v) for k, v in b.items()} for b, _ in calibration.batches(16)), source.logits)
    assert elastic.use_slices(feed_of(calibration, np.arange(16), torch), source.logits), "this model's sub-networks cannot run sliced"
    source.module.train()
    embeddings = embedding_tables(source.module, torch)
    optimizers = {arm: torch.optim.AdamW(source.module.parameters(), lr=1e-6) for arm in ARMS}  # one state per arm
    rng = np.random.default_rng(0)
    batches = batches_of(train, options.batch_size, rng)
    labels = torch.from_numpy(train.labels)
    smallest = elastic.smallest(options.min_width, options.min_depth)
    seconds: dict[tuple[str, bool], list[float]] = {arm: [] for arm in ARMS}
    for i in range(args.steps + 2):
        rows = batches[i % len(batches)]
        configs = [elastic.largest(), smallest] + [elastic.sample(rng, options.min_width, options.layer_drop, options.min_depth) for _ in range(options.random_subnets)]
        for arm in ARMS[i % len(ARMS) :] + ARMS[: i % len(ARMS)]:
            elastic.run_sliced(arm[0] == "sliced")
            for weight in embeddings:
                weight.requires_grad_(arm[1])
            start = time.perf_counter()
            sandwich_step(source, elastic, feed_of(train, rows, torch), labels[rows], configs, options, torch)
            torch.nn.utils.clip_grad_norm_([p for p in source.module.parameters() if p.requires_grad], 1.0)
            optimizers[arm].step()
            optimizers[arm].zero_grad()
            if i >= 2:
                seconds[arm].append(time.perf_counter() - start)
        print(f"step {i + 1} of {args.steps + 2}", file=sys.stderr, flush=True)
    reference = np.asarray(seconds[ARMS[0]])
    rows_ = [
        (arm[0], "trained" if arm[1] else "frozen", f"{np.median(seconds[arm]):.3f}", fmt_ratio(bootstrap(np.asarray(seconds[arm]) / reference)))
        for arm in ARMS
    ]
    params = sum(p.numel() for p in source.module.parameters())
    frozen = sum(w.numel() for w in embeddings)
    doc = ROOT / "docs" / "TUNE_STEPS.md"
    doc.write_text(
        f"# What a tuning step costs: sliced sub-networks, frozen embeddings\n\n"
        f"Written by `python tools/bench_tune_steps.py {args.model} --steps {args.steps}` on {cpu_name()}, "
        f"{options.threads} torch threads, torch {torch.__version__}.\n\n"
        f"{args.model}: {params / 1e6:.1f}M parameters, {frozen / 1e6:.1f}M of them in embedding tables. One step: batch "
        f"{options.batch_size} of the train split (padded to its longest example), the largest network, the smallest "
        f"({options.min_width:.0%} of every width, {options.min_depth:.0%} of the layers) and {options.random_subnets} random "
        f"sub-networks, forward and backward with logit and hidden-state distillation, gradient clipping and the AdamW step. "
        f"The four arms run the same {args.steps} batches and sub-networks, one step each in rotating order; ratio: "
        f"per-step seconds against the masked step with trained embeddings (`simq tune` before sub-networks ran sliced), "
        f"median with a bootstrap 95 % interval.\n\n"
        + table(["sub-networks", "embedding tables", "seconds per step (median)", "× masked, trained [95 %]"], rows_)
        + "\n"
    )
    print(doc.read_text())


if __name__ == "__main__":
    main()
