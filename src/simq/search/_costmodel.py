"""Training a target's latency predictor on measured random sub-networks of a job's space."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simq.ir import analyze
from simq.search._space import SearchSpace
from simq.targets import CostModel, compare, features

__all__ = ["cost_model_for", "train_cost_model"]


def train_cost_model(
    job, samples: int, seed: int, progress: Callable[[str, int, int], None] | None = None
) -> CostModel:
    """Measure `samples` random candidates of `job`'s space (each interleaved with the FP32 model,
    labelled by its paired ratio times the run's FP32 median) and fit a `CostModel` on them."""
    progress = progress or (lambda *_: None)
    space, target = SearchSpace(job.pipeline), job.target
    rng = np.random.default_rng(seed)
    signature = dict(job.structure.signature)
    rows, ratios, reference_ms = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        reference = target.runner(target.lower(job.model, Path(tmp) / "reference"), job.feed)
        for i, x in enumerate(space.sample(rng, samples)):
            progress("cost model", i, samples)
            config = space.decode(x)
            artifact = target.lower(job.pipeline.build(config), Path(tmp) / str(i))
            paired = compare(reference, target.runner(artifact, job.feed))
            ratios.append(paired.ratio)
            reference_ms.append(paired.reference_ms)
            unfused = job.pipeline.build(config, lower=False)  # what `features` can read
            rows.append(features(unfused, analyze(unfused, signature)))
        progress("cost model", samples, samples)
    scale = statistics.median(reference_ms)
    return CostModel(target.fingerprint(), seed=seed, timing=target.timing_settings()).fit(rows, [r * scale for r in ratios])


def cost_model_for(job, folder: Path, samples: int, seed: int, progress: Callable[..., None] | None = None) -> CostModel:
    """The cost model kept in `folder` for `job`'s target, or a new one trained there
    (`train_cost_model`) and saved."""
    if (folder / "costmodel.json").exists():
        return CostModel.load(folder, job.target.fingerprint(), job.target.timing_settings())
    model = train_cost_model(job, samples, seed, progress)
    model.save(folder)
    return model
