"""The search loop: ask the algorithm, have the executor evaluate, commit each result to the store
as it arrives, tell the algorithm; by generations, or steady-state (`CompileOptions.steady_state`)."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping

import numpy as np

from simq.search._algorithms import FAILED, Algorithm, Goal
from simq.search._evaluate import Evaluation, Executor, ModelEvaluator
from simq.search._objectives import References, tracked_values
from simq.search._options import CompileOptions
from simq.search._space import SearchSpace
from simq.search._store import Record, Store, config_key

__all__ = ["SearchLoop"]


class SearchLoop:
    """Runs one search over `space` and commits what it evaluates to `store`.

    Attributes:
        driver_steps: (calls, seconds) of the driver per step: "ask", "tell", "commit" (the
            store), "wait" (for the executor's evaluations).
    """

    def __init__(
        self, options: CompileOptions, space: SearchSpace, store: Store, executor: Executor, evaluator: ModelEvaluator,
        fingerprint: str, progress: Callable[..., None],
    ) -> None:  # fmt: skip
        self.options, self.space, self.store, self.executor, self.evaluator = options, space, store, executor, evaluator
        self.fingerprint, self.progress = fingerprint, progress
        self.driver_steps = dict.fromkeys(("ask", "tell", "commit", "wait"), (0, 0.0))

    @contextlib.contextmanager
    def _timed(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            calls, seconds = self.driver_steps[step]
            self.driver_steps[step] = (calls + 1, seconds + time.perf_counter() - start)

    def commit(self, config: Mapping[str, Hashable], kind: str, evaluation: Evaluation, predicted=None) -> Record:
        with self._timed("commit"):
            return self.store.add(
                config, kind=kind, metrics=evaluation.metrics, fingerprint=self.fingerprint, seconds=evaluation.seconds,
                predicted=predicted, model_hash=evaluation.digest, error=evaluation.error, worker=evaluation.worker,
                per_example=evaluation.per_example,
            )  # fmt: skip

    def run(self, algorithm: Algorithm, references: References, goal: Goal, reference: Record, deadline: float | None) -> str | None:
        """Search until the budget is validated (or the deadline passes: "time limit" is
        returned, or the algorithm stalls)."""
        self.progress("search", 0, self.options.budget, None)
        search = self._steady if self.options.steady_state else self._generations
        return search(algorithm, references, goal, reference, deadline)

    def _generations(self, algorithm, references: References, goal: Goal, reference: Record, deadline: float | None) -> str | None:
        """Ask a generation, evaluate it whole, tell it; again until the budget is validated.
        Returns why it stopped early, if it did."""
        o = self.options
        seen: set[str] = {config_key(reference.config)}
        validated, stalled, stopped_early = 0, 0, None
        while validated < o.budget and stalled < 50 and stopped_early is None:
            with self._timed("ask"):
                asked = algorithm.ask()
            batch: list[tuple[np.ndarray, dict[str, Hashable]]] = []
            fresh: list[str] = []  # keys this run has not asked for before
            for x in asked:
                if validated + len(fresh) >= o.budget:
                    break
                config = self.space.decode(x)
                key = config_key(config)
                if deadline is not None and time.monotonic() > deadline and self.store.find(config) is None:
                    stopped_early = "time limit"
                    break
                if key not in seen:
                    seen.add(key)
                    fresh.append(key)
                batch.append((x, config))
            records = self._evaluate_batch(batch, algorithm, reference)
            for record in {config_key(r.config): r for r in records if config_key(r.config) in fresh}.values():
                validated += 1
                self.progress("search", validated, o.budget, record)
            stalled = 0 if fresh else stalled + 1
            if batch:
                with self._timed("tell"):
                    algorithm.tell(np.array([x for x, _ in batch]), np.array([self._metric_vector(r, references, goal) for r in records]))
        return stopped_early

    def _steady(self, algorithm, references: References, goal: Goal, reference: Record, deadline: float | None) -> str | None:
        """Keep `population` candidates in flight: tell each result as it arrives and start the
        next at once (asking the search again when its last answer is used up), so no worker
        waits for a generation's slowest candidate. Returns why it stopped early, if it did.
        (The executor pulls the next candidate while the driver waits for results: asks made
        then count in the "wait" step as well.)"""
        o = self.options
        seen: set[str] = {config_key(reference.config)}
        in_flight: dict[str, np.ndarray] = {}
        predicted: dict[str, dict[str, float] | None] = {}  # what the ask that proposed it predicted
        asked: deque[np.ndarray] = deque()
        state = {"validated": 0, "stopped": None}

        def tell(x: np.ndarray, record: Record, fresh: bool = True) -> None:
            with self._timed("tell"):
                algorithm.tell(x[None], self._metric_vector(record, references, goal)[None])
            if fresh:
                state["validated"] += 1
                self.progress("search", state["validated"], o.budget, record)

        def feed() -> Iterator[dict[str, Hashable]]:
            stalled = 0  # asks in a row that gave nothing new
            while state["validated"] + len(in_flight) < o.budget:
                if not asked:
                    if stalled >= 50:
                        return
                    with self._timed("ask"):
                        asked.extend(algorithm.ask())
                    stalled += 1
                    continue
                x = asked.popleft()
                config = self.space.decode(x)
                key, found = config_key(config), self.store.find(config)
                if key in seen:
                    if key not in in_flight and found is not None:
                        tell(x, found, fresh=False)  # asked again: told again, not counted
                    continue
                if found is None and deadline is not None and time.monotonic() > deadline:
                    state["stopped"] = "time limit"
                    return
                seen.add(key)
                stalled = 0
                if found is not None:  # a resumed run's result
                    tell(x, found)
                    continue
                in_flight[key], predicted[key] = x, _readable(algorithm.predictions.get(key))
                yield config

        evaluations = self.executor.evaluate(self.evaluator, feed(), in_flight=o.population)
        while True:
            with self._timed("wait"):
                config, evaluation = next(evaluations, (None, None))
            if config is None:
                return state["stopped"]
            key = config_key(config)
            tell(in_flight.pop(key), self.commit(config, "candidate", evaluation, predicted.pop(key)))

    def _evaluate_batch(self, batch, algorithm, reference: Record) -> list[Record]:
        """Records of the batch's configs, in its order: stored ones as they are, the others
        evaluated by the executor and committed as each arrives."""
        reference_key = config_key(reference.config)
        records: dict[str, Record] = {}
        todo = []
        for _, config in batch:
            key = config_key(config)
            found = self.store.find(config)
            if found is not None:
                records[key] = found
            elif key not in {config_key(c) for c in todo}:
                todo.append(config)
        evaluations = self.executor.evaluate(self.evaluator, todo)
        while True:
            with self._timed("wait"):
                config, evaluation = next(evaluations, (None, None))
            if config is None:
                break
            key = config_key(config)
            kind = "candidate" if key != reference_key else "reference"
            records[key] = self.commit(config, kind, evaluation, _readable(algorithm.predictions.get(key)))
        return [records[config_key(c)] for _, c in batch]

    def _metric_vector(self, record: Record, references: References, goal: Goal) -> np.ndarray:
        values = tracked_values(self.options.objective_table, goal.metrics, record, references)
        return np.array([FAILED if v is None else v for v in values])


def _readable(predicted: Mapping[str, float] | None) -> dict[str, float] | None:
    """Predictions of the objectives, as the search saw them (normalised, lower is better)."""
    return dict(predicted) if predicted else None
