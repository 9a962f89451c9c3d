"""The search space for pymoo: one integer variable per knob (an index into its domain)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from simq.passes import Pipeline, is_precision, knob_kind
from simq.passes.quant import INFERENCE_PRECISION, PRECISIONS, nearest
from simq.search._store import config_key

__all__ = ["SearchSpace"]

def _is_width(knob) -> bool:
    """A knob that keeps a number of units (heads, neurons, channels), default = all of them."""
    return not is_precision(knob.name) and isinstance(knob.default, int) and not isinstance(knob.default, bool)


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
            p for p in PRECISIONS if any(p in k.domain for k in self.knobs if is_precision(k.name))
        ] or ["fp32"]
        #: The whole-model inference precisions on offer (``bf16`` where the target has it).
        self.model_precisions = next((list(k.domain) for k in self.knobs if k.name == INFERENCE_PRECISION), ["fp32"])

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
        """Uniform policies, what a user would try first: every unit at each compressed
        precision in turn (a unit that lacks it takes the next one, `simq.passes.quant.FALLBACK`);
        then the first of them (or the target's `Lowering.seed_precision`: FP32 where its INT8
        kernels do not pay on this CPU) on a lattice of width (every width knob, heads, FFN, channels, at
        75 % and at 50 % of its default) and depth (one and two middle blocks dropped, at full
        width and at 75 %). Where the target offers BF16 for the whole model: BF16 alone first,
        and every policy above with BF16 for what stays float.

        docs/QUANT.md and docs/PRUNE.md show these are strong on their own (INT8 everywhere keeps
        accuracy at half the latency; half the FFN with least-squares refit costs ~1 point), and
        depth is where latency falls in proportion (docs/LOWERING.md), so a search starts from
        them rather than hoping to draw them.
        """
        compressed = self.precisions[1:]
        seed = self.pipeline.lowering.seed_precision
        first = seed if seed in self.precisions else compressed[0] if compressed else None
        lattice = ((0.75, 0), (0.5, 0), (1.0, 1), (0.75, 1), (1.0, 2), (0.75, 2))
        trained = self.pipeline.trained
        if trained is not None:  # what tuning trained: its smallest network, then its lattice, diagonals first
            deepest = len(self._middle_blocks())
            lattice = ((trained.min_width, deepest), *sorted(
                {(w, d) for w in (1.0, 0.75, 0.5) for d in range(deepest + 1)} - {(1.0, 0)},
                key=lambda wd: (abs((1 - wd[0]) * 4 - wd[1]), -wd[1]),
            ))  # fmt: skip
        policies = [(p, 1.0, 0) for p in compressed] + [(first, w, d) for w, d in lattice]
        floats = self.model_precisions[::-1]  # BF16 first where offered
        rows, keys = [], {self.key(self.encode({}))}
        for model_precision in floats if len(floats) > 1 else []:
            rows.append(self.encode({INFERENCE_PRECISION: model_precision}))
            keys.add(self.key(rows[-1]))
        for precision, width, drops in policies:
            if drops and len(self._middle_blocks()) < drops:
                continue
            for model_precision in floats:
                config = {k.name: nearest(k.domain, precision) for k in self.knobs if precision and is_precision(k.name)}
                if width < 1.0:
                    config |= {k.name: min(k.domain, key=lambda v, k=k: abs(v - width * k.default)) for k in self.knobs if _is_width(k)}
                config |= {name: True for name in self._middle_blocks()[:drops]}
                if len(floats) > 1:
                    config[INFERENCE_PRECISION] = model_precision
                x = self.encode(config)
                if self.key(x) not in keys:
                    keys.add(self.key(x))
                    rows.append(x)
        return np.array(rows, dtype=int).reshape(len(rows), self.size)

    def _middle_blocks(self) -> list[str]:
        """Depth knobs of the blocks between the first and the last, the middle first (dropping
        the first or last layer costs several times more: docs/PRUNE.md)."""
        depth = [k.name for k in self.knobs if knob_kind(k.name) == "depth" and True in k.domain]
        if self.pipeline.trained is not None:  # only the blocks tuning drops, in its order
            return depth
        inner = depth[1:-1]
        return sorted(inner, key=lambda name: abs(depth.index(name) - (len(depth) - 1) / 2))

    def initial(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """A first population: the `anchors`, then `sample`s."""
        anchors = self.anchors()[:count]
        return np.vstack([anchors, self.sample(rng, count - len(anchors))]) if count > len(anchors) else anchors

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` random vectors, repaired, spread from light to heavy compression.

        Drawing every knob uniformly would change half of them in every candidate (drop half
        the layers, random widths and precisions everywhere), so nearly all samples would be
        heavily compressed, alike and poor. Instead each candidate draws how it compresses:

        - a share p ~ U(0, 1) of the width knobs it moves, and for each kind of width knob
          (heads, FFN, channels) one level t ~ U(0, 1) of its range: a moved knob lands on
          the domain value at t, give or take one step (uniform pruning is what post-training
          pruning with least-squares refit tolerates best; docs/PRUNE.md);
        - every other knob (block drops) moves with probability p / 3, to a random value:
          a dropped block costs points;
        - one base precision for the whole model, each unit leaving it with probability
          q ~ U(0, 0.3): node-by-node random mixes are nearly always slower than any uniform
          policy, since every switch adds a Q/DQ pair;
        - the whole-model inference precision (BF16 or not), with even odds.
        """
        defaults = self.encode({})
        kinds = [knob_kind(k.name) for k in self.knobs]
        width_kinds = sorted({kind for kind, k in zip(kinds, self.knobs) if _is_width(k)})
        base_precisions = [
            np.array([k.domain.index(nearest(k.domain, p)) if is_precision(k.name) else 0 for k in self.knobs])
            for p in self.precisions
        ]
        rows = []
        for _ in range(count):
            share, deviate = rng.uniform(), rng.uniform(0, 0.3)
            base = base_precisions[rng.integers(len(base_precisions))]
            levels = {kind: rng.uniform() for kind in width_kinds}
            x = defaults.copy()
            for i, (kind, knob) in enumerate(zip(kinds, self.knobs)):
                if is_precision(knob.name):
                    x[i] = base[i] if rng.uniform() >= deviate else rng.integers(0, self.upper[i] + 1)
                elif knob.name == INFERENCE_PRECISION:
                    x[i] = rng.integers(0, self.upper[i] + 1)
                elif kind in levels:
                    if rng.uniform() < share:
                        x[i] = np.clip(round(levels[kind] * self.upper[i]) + rng.integers(-1, 2), 0, self.upper[i])
                elif rng.uniform() < share / 3:
                    x[i] = rng.integers(0, self.upper[i] + 1)
            rows.append(self.repair(x))
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
