"""Search algorithms behind one ask/tell interface: random, NSGA-II and LINAS.

Every algorithm asks for a batch of encoded candidates and is told their metrics. Metrics are
in minimisation form (`Goal`): a subset are the objectives, and upper limits on any of them are
the constraints. All randomness comes from the seed, and catboost runs on one thread, so the
same seed and the same told values give the same sequence of candidates; a resumed run relies
on this to replay what it already evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.optimize import minimize
from pymoo.problems.static import StaticProblem

from simq.search._space import SearchSpace

__all__ = ["ALGORITHMS", "Algorithm", "Goal", "Linas", "Nsga2", "RandomSearch", "make_algorithm"]

#: The value told for a candidate whose evaluation failed: worse than anything real.
FAILED = 1e9


@dataclass(frozen=True)
class Goal:
    """What is minimised and what is bounded, over a vector of tracked metrics.

    Attributes:
        metrics: Names of the tracked metrics, each in minimisation form.
        objectives: Indices (into `metrics`) of the objectives.
        limits: Upper bounds on metrics, by index: the constraints.
    """

    metrics: tuple[str, ...]
    objectives: tuple[int, ...]
    limits: dict[int, float] = field(default_factory=dict)

    def objective_values(self, m: np.ndarray) -> np.ndarray:
        return m[:, list(self.objectives)]

    def constraint_values(self, m: np.ndarray) -> np.ndarray:
        """Constraint values, feasible when <= 0 (an empty matrix when nothing is bounded)."""
        if not self.limits:
            return np.zeros((len(m), 0))
        return np.stack([m[:, i] - bound for i, bound in self.limits.items()], axis=1)


def _nsga2(space: SearchSpace, pop_size: int, seed: int) -> NSGA2:
    return NSGA2(
        pop_size=pop_size,
        sampling=space.pymoo_sampling(seed),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        repair=space.pymoo_repair(),
        eliminate_duplicates=True,
    )


def _problem(space: SearchSpace, goal: Goal) -> Problem:
    return Problem(
        n_var=space.size, n_obj=len(goal.objectives), n_ieq_constr=len(goal.limits), xl=0, xu=space.upper, vtype=int
    )


class RandomSearch:
    """Uniformly random configs, `batch` at a time."""

    incremental = True

    def __init__(self, space: SearchSpace, goal: Goal, batch: int, seed: int) -> None:
        self.space, self.batch, self.rng = space, batch, np.random.default_rng(seed)
        self.predictions: dict[str, dict[str, float]] = {}

    def ask(self) -> np.ndarray:
        return self.space.sample(self.rng, self.batch)

    def tell(self, x: np.ndarray, m: np.ndarray) -> None:
        pass


class Nsga2:
    """NSGA-II on the real objectives: every candidate it asks for is fully evaluated, a whole
    generation told at once."""

    incremental = False

    def __init__(self, space: SearchSpace, goal: Goal, batch: int, seed: int) -> None:
        self.goal, self.problem = goal, _problem(space, goal)
        self.algorithm = _nsga2(space, batch, seed)
        self.algorithm.setup(self.problem, seed=seed, termination=("n_gen", 10**9))
        self._asked = None
        self.predictions: dict[str, dict[str, float]] = {}

    def ask(self) -> np.ndarray:
        self._asked = self.algorithm.ask()
        return np.rint(self._asked.get("X")).astype(int)

    def tell(self, x: np.ndarray, m: np.ndarray) -> None:
        # Only the asked candidates that were evaluated (a budget may end mid-batch).
        population = self._asked[: len(x)]
        static = StaticProblem(self.problem, F=self.goal.objective_values(m), G=self.goal.constraint_values(m))
        Evaluator().eval(static, population)
        self.algorithm.tell(infills=population)


class _Predicted(Problem):
    """The objectives and constraints as the predictors see them (cheap: no model is built)."""

    def __init__(self, space: SearchSpace, goal: Goal, predictors: list) -> None:
        super().__init__(
            n_var=space.size, n_obj=len(goal.objectives), n_ieq_constr=len(goal.limits), xl=0, xu=space.upper, vtype=int
        )
        self.goal, self.predictors = goal, predictors

    def _evaluate(self, x, out, *args, **kwargs):
        m = np.stack([p.predict(np.rint(x)) for p in self.predictors], axis=1)
        out["F"] = self.goal.objective_values(m)
        if self.goal.limits:
            out["G"] = self.goal.constraint_values(m)


class Linas:
    """LINAS: NSGA-II guided by lightly trained predictors.

    Its first batch is every `SearchSpace.anchors` (the uniform precision policies, then the
    width and depth lattice: what a grid would try, and on a tuned model the sub-networks tuning
    trained; at most twice `batch`), topped up with random candidates to `batch`; until four
    candidates are validated it asks for random ones. After
    that, each ask trains one catboost regressor per tracked metric on every validated
    candidate, runs NSGA-II on the predictors for `generations` generations (`inner_population`
    each, starting from the validated candidates), and returns the predicted front's best
    `batch` candidates neither validated nor asked for and still in flight. It may be told any
    part of what it asked, in any order (`incremental`: a steady-state search).
    """

    incremental = True

    def __init__(
        self, space: SearchSpace, goal: Goal, batch: int, seed: int, generations: int = 60, inner_population: int = 100
    ) -> None:
        self.space, self.goal, self.batch, self.seed = space, goal, batch, seed
        self.generations, self.inner_population = generations, inner_population
        self.rng = np.random.default_rng(seed)
        #: What the predictors said of the candidates of the last ask, by config key (minimisation form).
        self.predictions: dict[str, dict[str, float]] = {}
        self.x: list[np.ndarray] = []
        self.m: list[np.ndarray] = []
        self.iteration = 0
        self._in_flight: set[str] = set()  # asked for, not told yet

    def ask(self) -> np.ndarray:
        self.iteration += 1
        valid = [i for i, m in enumerate(self.m) if np.all(m < FAILED)]
        if self.iteration == 1:
            return self._asked(self.space.initial(self.rng, min(max(self.batch, len(self.space.anchors())), 2 * self.batch)))
        if len(valid) < 4:
            return self._asked(self.space.sample(self.rng, self.batch))
        x = np.array([self.x[i] for i in valid])
        m = np.array([self.m[i] for i in valid])
        predictors = [self._fit(x, m[:, j]) for j in range(m.shape[1])]
        seed = self.seed * 1000 + self.iteration
        inner = _nsga2(self.space, self.inner_population, seed)
        # Start from everything validated (the real front among it) plus fresh samples.
        inner.initialization.sampling = np.vstack([x, self.space.sample(self.rng, self.inner_population)]).astype(float)
        result = minimize(
            _Predicted(self.space, self.goal, predictors), inner, ("n_gen", self.generations), seed=seed, verbose=False
        )
        seen = {self.space.key(v) for v in self.x} | self._in_flight
        chosen, keys = [], set()
        # The final population is sorted by rank and crowding: take the best new ones.
        for v in np.rint(result.pop.get("X")).astype(int):
            key = self.space.key(v)
            if key not in seen and key not in keys:
                chosen.append(self.space.repair(v))
                keys.add(key)
            if len(chosen) == self.batch:
                break
        self.predictions = {}
        if chosen:
            predicted = np.stack([p.predict(np.array(chosen)) for p in predictors], axis=1)
            self.predictions = {
                self.space.key(v): dict(zip(self.goal.metrics, map(float, row))) for v, row in zip(chosen, predicted)
            }
        if len(chosen) < self.batch:  # the predictors agree on too few: explore the rest at random
            chosen.extend(self.space.sample(self.rng, self.batch - len(chosen)))
        return self._asked(np.array(chosen))

    def _asked(self, x: np.ndarray) -> np.ndarray:
        self._in_flight |= {self.space.key(v) for v in x}
        return x

    def tell(self, x: np.ndarray, m: np.ndarray) -> None:
        self.x.extend(x)
        self.m.extend(m)
        self._in_flight -= {self.space.key(v) for v in x}

    def _fit(self, x: np.ndarray, y: np.ndarray):
        from catboost import CatBoostRegressor

        if np.ptp(y) == 0:  # catboost refuses a constant target
            return _Constant(float(y[0]))
        model = CatBoostRegressor(
            iterations=300, depth=4, learning_rate=0.08, random_seed=self.seed, verbose=False,
            thread_count=1, allow_writing_files=False,
        )  # fmt: skip
        return model.fit(x, y)


class _Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value)


@runtime_checkable
class Algorithm(Protocol):
    """A search algorithm: it asks for a batch of encoded candidates and is told their metrics
    (minimisation form, in the order of `Goal.metrics`).

    Attributes:
        predictions: What it predicted for the candidates of its last ask, by config key
            (minimisation form); empty for algorithms that do not predict.
        incremental: (optional class attribute, False when absent) Whether it may be told any
            part of what it asked, in any order, and asked again before the rest is told: what
            a steady-state search (`CompileOptions.steady_state`) needs.
    """

    predictions: Mapping[str, Mapping[str, float]]

    def ask(self) -> np.ndarray: ...

    def tell(self, x: np.ndarray, m: np.ndarray) -> None: ...


ALGORITHMS: Mapping[str, Callable[..., Algorithm]] = {"random": RandomSearch, "nsga2": Nsga2, "linas": Linas}


def make_algorithm(name: str, space: SearchSpace, goal: Goal, batch: int, seed: int) -> Algorithm:
    return ALGORITHMS[name](space, goal, batch, seed)
