"""A target's latency predictor: catboost on IR features, saved with the target fingerprint."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simq.errors import InvalidArgumentError
from simq.targets._api import Fingerprint
from simq.targets._features import vector

__all__ = ["CostModel", "Prediction"]


@dataclass(frozen=True)
class Prediction:
    """Predicted latency (ms) and the predictor's own uncertainty (a standard deviation, ms)."""

    latency_ms: float
    std_ms: float


class CostModel:
    """Predicts latency from `features()` for one fingerprint.

    It learns log-latency with catboost's RMSE-with-uncertainty loss, so that every prediction
    comes with the model's estimate of its own error. A seed is required: same data, same seed,
    same predictor.
    """

    def __init__(self, fingerprint: Fingerprint, seed: int, iterations: int = 600) -> None:
        self.fingerprint, self.seed, self.iterations = fingerprint, seed, iterations
        self.names: list[str] = []
        self._model = None

    def fit(self, samples: Sequence[Mapping[str, float]], latencies_ms: Sequence[float]) -> CostModel:
        from catboost import CatBoostRegressor

        if len(samples) != len(latencies_ms) or len(samples) < 4:
            raise InvalidArgumentError("a cost model needs at least 4 measured samples, one latency each.")
        self.names = sorted({name for s in samples for name in s})
        x = np.array([vector(s, self.names) for s in samples])
        y = np.log(np.asarray(latencies_ms, dtype=float))
        self._model = CatBoostRegressor(
            loss_function="RMSEWithUncertainty", iterations=self.iterations, depth=4, learning_rate=0.05,
            random_seed=self.seed, verbose=False, thread_count=1, allow_writing_files=False,
        )  # fmt: skip
        self._model.fit(x, y)
        return self

    def predict(self, sample: Mapping[str, float]) -> Prediction:
        return self.predict_many([sample])[0]

    def predict_many(self, samples: Sequence[Mapping[str, float]]) -> list[Prediction]:
        if self._model is None:
            raise InvalidArgumentError("this cost model is not trained; fit() it or load() a saved one.")
        x = np.array([vector(s, self.names) for s in samples])
        mean_log, var_log = self._model.predict(x).T  # [mean, variance] of log-latency
        mean = np.exp(mean_log)
        return [Prediction(float(m), float(m * np.sqrt(max(v, 0.0)))) for m, v in zip(mean, var_log)]

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self._model.save_model(str(directory / "model.cbm"))
        meta = {"fingerprint": self.fingerprint.__dict__, "names": self.names, "seed": self.seed, "iterations": self.iterations}
        (directory / "costmodel.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path, fingerprint: Fingerprint) -> CostModel:
        """Load a saved predictor; refuse one trained on another fingerprint."""
        from catboost import CatBoostRegressor

        meta = json.loads((directory / "costmodel.json").read_text())
        saved = Fingerprint(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["fingerprint"].items()})
        if saved.key() != fingerprint.key():
            raise InvalidArgumentError(
                f"the cost model in {directory} was trained on {saved.key()}, not on {fingerprint.key()}; retrain it here."
            )
        model = cls(saved, meta["seed"], meta["iterations"])
        model.names = meta["names"]
        model._model = CatBoostRegressor()
        model._model.load_model(str(directory / "model.cbm"))
        return model
