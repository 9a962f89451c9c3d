"""The search space for pymoo: one integer variable per knob (an index into its domain)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from simq.passes import Pipeline
from simq.search._store import config_key

__all__ = ["SearchSpace"]


class SearchSpace:
    """The knobs of a `Pipeline` encoded as integer vectors, with the pipeline's repair.

    Variable i is the index of knob i's value in its domain; a vector always decodes to a
    repaired (canonical) config, so two vectors that build the same model decode alike.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.knobs = pipeline.knobs
        self.upper = np.array([len(k.domain) - 1 for k in self.knobs], dtype=int)

    @property
    def size(self) -> int:
        return len(self.knobs)

    def decode(self, x: np.ndarray) -> dict[str, Hashable]:
        x = np.clip(np.rint(x).astype(int), 0, self.upper)
        return self.pipeline.repair({k.name: k.domain[i] for k, i in zip(self.knobs, x)})

    def encode(self, config: Mapping[str, Hashable]) -> np.ndarray:
        config = self.pipeline.repair(config)
        return np.array([k.domain.index(config[k.name]) for k in self.knobs], dtype=int)

    def repair(self, x: np.ndarray) -> np.ndarray:
        return self.encode(self.decode(x))

    def key(self, x: np.ndarray) -> str:
        return config_key(self.decode(x))

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` random vectors, repaired, spread from light to heavy compression.

        Drawing every knob uniformly would change half of them in every candidate (drop half
        the layers, ...), so nearly all samples would be heavily compressed and alike. Instead
        each candidate draws a share p ~ U(0, 1) and moves each knob away from its default
        with probability p, to a uniformly random value of its domain.
        """
        defaults = self.encode({})
        rows = []
        for _ in range(count):
            share = rng.uniform()
            moved = rng.uniform(size=self.size) < share
            rows.append(self.repair(np.where(moved, rng.integers(0, self.upper + 1), defaults)))
        return np.array(rows)

    def pymoo_sampling(self, seed: int) -> Sampling:
        """`sample` as pymoo's initial population."""
        space, rng = self, np.random.default_rng(seed)

        class _SpaceSampling(Sampling):
            def _do(self, problem, n_samples, **kwargs):
                return space.sample(rng, n_samples).astype(float)

        return _SpaceSampling()

    def pymoo_repair(self) -> Repair:
        space = self

        class _SpaceRepair(Repair):
            def _do(self, problem, X, **kwargs):
                return np.array([space.repair(x) for x in X], dtype=float)

        return _SpaceRepair()
