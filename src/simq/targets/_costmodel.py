"""A target's latency predictor: an additive cost per feature plus a catboost correction, saved
with the target fingerprint and the timing settings its labels were measured under."""

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

    Two stages. The base is additive: latency = constant + a non-negative cost per unit of each
    feature (MACs of INT8 MatMuls, bytes of FP32 weights, Q/DQ ops, ...), fit by non-negative
    least squares. It follows how a runtime spends time, node after node, so it interpolates and
    extrapolates sensibly from the few dozen samples a search can afford. A catboost model then
    learns the log of what the base misses (fusions, cache effects) with the RMSE-with-uncertainty
    loss, so that every prediction comes with the model's estimate of its own error. On the
    measured sub-networks of docs/COSTMODEL.md the two stages beat catboost alone on every model
    and target (Kendall tau 0.73-0.93 against 0.70-0.87).
    A seed is required: same data, same seed, same predictor. `timing`: the session settings the
    training latencies were timed under (`Target.timing_settings`); a saved model is refused under
    other settings, as on another fingerprint.
    """

    def __init__(self, fingerprint: Fingerprint, seed: int, iterations: int = 150, timing: Mapping[str, str] | None = None) -> None:
        self.fingerprint, self.seed, self.iterations = fingerprint, seed, iterations
        self.timing = dict(timing or {})
        self.names: list[str] = []
        self._base: dict[str, float] = {}  # per-unit cost of each feature (ms), "" = the constant
        self._model = None

    def fit(self, samples: Sequence[Mapping[str, float]], latencies_ms: Sequence[float]) -> CostModel:
        from catboost import CatBoostRegressor
        from scipy.optimize import nnls

        if len(samples) != len(latencies_ms) or len(samples) < 4:
            raise InvalidArgumentError("a cost model needs at least 4 measured samples, one latency each.")
        self.names = sorted({name for s in samples for name in s})
        x = np.array([vector(s, self.names) for s in samples])
        y = np.asarray(latencies_ms, dtype=float)
        varying = [i for i in range(len(self.names)) if np.ptp(x[:, i]) > 0]
        scale = np.abs(x[:, varying]).max(axis=0)  # conditioning: every column in [0, 1]
        coef, _ = nnls(np.hstack([x[:, varying] / scale, np.ones((len(x), 1))]), y)
        self._base = {self.names[i]: float(c / s) for i, c, s in zip(varying, coef, scale)} | {"": float(coef[-1])}
        base = self._base_ms(x)
        self._model = CatBoostRegressor(
            loss_function="RMSEWithUncertainty", iterations=self.iterations, depth=3, learning_rate=0.05,
            random_seed=self.seed, verbose=False, thread_count=1, allow_writing_files=False,
        )  # fmt: skip
        self._model.fit(x, np.log(y / base))
        return self

    def _base_ms(self, x: np.ndarray) -> np.ndarray:
        per_unit = np.array([self._base.get(n, 0.0) for n in self.names])
        # Never below a small positive floor: the log correction and the ratios need a positive base.
        return np.maximum(x @ per_unit + self._base[""], 1e-3)

    def predict(self, sample: Mapping[str, float]) -> Prediction:
        return self.predict_many([sample])[0]

    def predict_many(self, samples: Sequence[Mapping[str, float]]) -> list[Prediction]:
        if self._model is None:
            raise InvalidArgumentError("this cost model is not trained; fit() it or load() a saved one.")
        x = np.array([vector(s, self.names) for s in samples])
        mean_log, var_log = self._model.predict(x).T  # [mean, variance] of the log correction
        mean = self._base_ms(x) * np.exp(mean_log)
        return [Prediction(float(m), float(m * np.sqrt(max(v, 0.0)))) for m, v in zip(mean, var_log)]

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self._model.save_model(str(directory / "model.cbm"))
        meta = {
            "fingerprint": self.fingerprint.__dict__, "names": self.names, "seed": self.seed,
            "iterations": self.iterations, "base": self._base, "timing": self.timing,
        }  # fmt: skip
        (directory / "costmodel.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path, fingerprint: Fingerprint, timing: Mapping[str, str] | None = None) -> CostModel:
        """Load a saved predictor; refuse one trained on another fingerprint or timed under other
        settings than `timing`."""
        from catboost import CatBoostRegressor

        meta = json.loads((directory / "costmodel.json").read_text())
        saved = Fingerprint(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["fingerprint"].items()})
        if saved.key() != fingerprint.key():
            raise InvalidArgumentError(
                f"the cost model in {directory} was trained on {saved.key()}, not on {fingerprint.key()}; retrain it here."
            )
        if "base" not in meta or "timing" not in meta:
            raise InvalidArgumentError(
                f"the cost model in {directory} was saved by an older SimQ; delete it to retrain it."
            )
        if meta["timing"] != dict(timing or {}):
            raise InvalidArgumentError(
                f"the cost model in {directory} was timed under {meta['timing']}, not {dict(timing or {})}; delete it to retrain it."
            )
        model = cls(saved, meta["seed"], meta["iterations"], meta["timing"])
        model.names, model._base = meta["names"], meta["base"]
        model._model = CatBoostRegressor()
        model._model.load_model(str(directory / "model.cbm"))
        return model
