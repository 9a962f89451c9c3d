"""The search space for pymoo: one integer variable per knob (an index into its domain)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from simq.passes import Pipeline
from simq.search._store import config_key

__all__ = ["SearchSpace"]

QUANT = "quant."
#: Precisions from the least to the most compressed.
PRECISIONS = ("fp32", "int8", "int4w")


def _nearest(domain: tuple, precision: str) -> str:
    """`precision` if a knob offers it, else the next less compressed one it offers."""
    for p in reversed(PRECISIONS[: PRECISIONS.index(precision) + 1]):
        if p in domain:
            return p
    return domain[0]


class SearchSpace:
    """The knobs of a `Pipeline` encoded as integer vectors, with the pipeline's repair.

    Variable i is the index of knob i's value in its domain; a vector always decodes to a
    repaired (canonical) config, so two vectors that build the same model decode alike.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.knobs = pipeline.knobs
        self.upper = np.array([len(k.domain) - 1 for k in self.knobs], dtype=int)
        #: Every precision some quantization knob offers, FP32 first.
        self.precisions = [
            p for p in PRECISIONS if any(p in k.domain for k in self.knobs if k.name.startswith(QUANT))
        ] or ["fp32"]

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

    def anchors(self) -> np.ndarray:
        """The uniform precision policies, unpruned: every quantizable node INT8, every one
        INT4-weight where it can (INT8 elsewhere), ... one vector per precision below FP32.

        They are what a user would try first (docs/QUANT.md: INT8 everywhere keeps accuracy at
        0.6x latency), so a search starts from them rather than hoping to draw them.
        """
        rows, keys = [], set()
        for precision in self.precisions[1:]:
            x = self.encode({k.name: _nearest(k.domain, precision) for k in self.knobs if k.name.startswith(QUANT)})
            if self.key(x) not in keys:
                keys.add(self.key(x))
                rows.append(x)
        return np.array(rows, dtype=int).reshape(len(rows), self.size)

    def initial(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """A first population: the `anchors`, then `sample`s."""
        anchors = self.anchors()[:count]
        return np.vstack([anchors, self.sample(rng, count - len(anchors))]) if count > len(anchors) else anchors

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` random vectors, repaired, spread from light to heavy compression.

        Drawing every knob uniformly would change half of them in every candidate (drop half
        the layers, ...), so nearly all samples would be heavily compressed and alike. Instead
        each candidate draws a share p ~ U(0, 1) and moves each pruning knob away from its
        default with probability p, to a uniformly random value of its domain. Precisions start
        from one base precision for the whole model (mixing precisions node by node at random
        is nearly always slower than any uniform policy: every switch adds a Q/DQ pair), and
        each node leaves it with probability q ~ U(0, 0.3).
        """
        defaults = self.encode({})
        quant = np.array([k.name.startswith(QUANT) for k in self.knobs], dtype=bool)
        base_precisions = [
            np.array([k.domain.index(_nearest(k.domain, p)) if q else 0 for k, q in zip(self.knobs, quant)], dtype=int)
            for p in self.precisions
        ]  # fmt: skip
        rows = []
        for _ in range(count):
            share, deviate = rng.uniform(), rng.uniform(0, 0.3)
            base = base_precisions[rng.integers(len(base_precisions))]
            moved = rng.uniform(size=self.size) < np.where(quant, deviate, share)
            start = np.where(quant, base, defaults)
            rows.append(self.repair(np.where(moved, rng.integers(0, self.upper + 1), start)))
        return np.array(rows, dtype=int).reshape(count, self.size)

    def pymoo_sampling(self, seed: int) -> Sampling:
        """`initial` as pymoo's initial population."""
        space, rng = self, np.random.default_rng(seed)

        class _SpaceSampling(Sampling):
            def _do(self, problem, n_samples, **kwargs):
                return space.initial(rng, n_samples).astype(float)

        return _SpaceSampling()

    def pymoo_repair(self) -> Repair:
        space = self

        class _SpaceRepair(Repair):
            def _do(self, problem, X, **kwargs):
                return np.array([space.repair(x) for x in X], dtype=float)

        return _SpaceRepair()
