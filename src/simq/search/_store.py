"""The result store: one SQLite database per compile run, one committed row per evaluation.

A killed run loses nothing it finished: every candidate is committed as it completes, and a
resumed run finds it by its config. Latency measurements are keyed by the candidate model's
hash and the target fingerprint, so an identical model is never measured twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simq.errors import InvalidArgumentError, OutputError

__all__ = ["FINAL", "SEARCH", "Record", "Store", "config_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    config_key TEXT UNIQUE NOT NULL,
    config TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    metrics TEXT NOT NULL,
    predicted TEXT NOT NULL,
    model_hash TEXT,
    fingerprint TEXT NOT NULL,
    artifact TEXT,
    seconds REAL NOT NULL,
    final TEXT NOT NULL DEFAULT '{}',
    worker TEXT
);
CREATE TABLE IF NOT EXISTS per_example (
    model_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    scores BLOB NOT NULL,
    PRIMARY KEY (model_hash, role)
);
CREATE TABLE IF NOT EXISTS scores (
    model_hash TEXT NOT NULL,
    evaluator TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (model_hash, evaluator)
);
CREATE TABLE IF NOT EXISTS measurements (
    model_hash TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    latency_ratio REAL NOT NULL,
    latency_ms REAL NOT NULL,
    latency_ratio_low REAL,
    latency_ratio_high REAL,
    PRIMARY KEY (model_hash, fingerprint)
);
"""


#: Columns added after stores were first written: (table, column, type); opening adds them.
_ADDED_COLUMNS = (
    ("candidates", "worker", "TEXT"),
    ("measurements", "latency_ratio_low", "REAL"),
    ("measurements", "latency_ratio_high", "REAL"),
)


#: Roles of per-example scores: the split the search scored, the final split.
SEARCH, FINAL = "search", "final"
_MEASURED = ("latency_ratio", "latency_ms", "latency_ratio_low", "latency_ratio_high")


def config_key(config: Mapping[str, Hashable]) -> str:
    """A canonical string for a config (knob order does not matter)."""
    return json.dumps(dict(sorted(config.items())), separators=(",", ":"))


@dataclass(frozen=True)
class Record:
    """One evaluated candidate.

    Attributes:
        kind: ``"reference"`` (the FP32 model), ``"baseline"`` (an off-the-shelf recipe) or
            ``"candidate"`` (a searched config).
        status: ``"ok"``, or ``"error"`` with `error` saying why.
        metrics: Measured values: the evaluator's score, ``latency_ratio`` to the reference,
            ``latency_ms``, ``size_bytes``.
        predicted: What the predictors said before it was validated (LINAS), if anything.
        final: The end-of-run values for the Pareto set, the reference and the baselines:
            ``latency_ms``/``latency_ratio`` (and its interval) timed in paired rounds with FP32,
            and ``accuracy`` on the final split.
        worker: Where it was evaluated (``host:pid`` of a cluster worker), if not in the driver.
        per_example: The evaluator's per-example scores, by role: ``search`` (the split the
            search scored) and ``final`` (the final split), where the evaluator gives them; what
            accuracy drops are judged on, paired with the reference's (`simq.eval.paired_drop`).
    """

    id: int
    config: dict[str, Any]
    kind: str
    status: str
    error: str | None
    metrics: dict[str, float]
    predicted: dict[str, float]
    model_hash: str | None
    fingerprint: str
    artifact: str | None
    seconds: float
    final: dict[str, float]
    worker: str | None = None
    per_example: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)


class Store:
    """Results of one compile run in ``DIR/simq.sqlite``."""

    FILENAME = "simq.sqlite"

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path)
            self._db.executescript(_SCHEMA)
            for table, column, kind in _ADDED_COLUMNS:  # a store written before the column existed
                if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.Error as e:
            raise OutputError(f"cannot open the result store {path}: {e}") from None
        self.path = path

    def close(self) -> None:
        self._db.close()

    # run settings: what the store was created for, checked on resume

    def settings(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM run")}

    def bind(self, settings: Mapping[str, Any], resume: bool, required: Collection[str] = ()) -> None:
        """Record the run's settings, or check that a resumed run has the same ones.

        A setting the stored run lacks is taken as unchanged (it came with a newer version), except
        those in `required`: a store that did not record them cannot be resumed.

        Raises:
            InvalidArgumentError: The store holds another run (without `resume`), or a run
                with different settings.
        """
        saved = self.settings()
        if saved and not resume:
            raise InvalidArgumentError(
                f"{self.path.parent} already holds a compile run; pass --resume to continue it or choose another --out."
            )
        if saved:
            checked = [k for k in settings if k in saved or k in required]
            changed = [k for k in checked if saved.get(k) != json.loads(json.dumps(settings[k]))]
            if changed:
                detail = ", ".join(f"{k}: {saved.get(k, 'not recorded')!r} then, {settings[k]!r} now" for k in changed)
                raise InvalidArgumentError(
                    f"cannot resume: the run in {self.path.parent} was started with other settings ({detail})."
                )
            return
        with self._db:
            self._db.executemany("INSERT INTO run VALUES (?, ?)", [(k, json.dumps(v)) for k, v in settings.items()])

    # candidates

    def find(self, config: Mapping[str, Hashable]) -> Record | None:
        row = self._db.execute("SELECT * FROM candidates WHERE config_key = ?", (config_key(config),)).fetchone()
        return self._record(row) if row else None

    def add(
        self,
        config: Mapping[str, Hashable],
        *,
        kind: str,
        metrics: Mapping[str, float],
        fingerprint: str,
        seconds: float,
        predicted: Mapping[str, float] | None = None,
        model_hash: str | None = None,
        error: str | None = None,
        worker: str | None = None,
        per_example: np.ndarray | None = None,
    ) -> Record:
        """Commit one evaluated candidate (or its failure) and return it, with the search's
        per-example scores of its model where there are some."""
        with self._db:
            if per_example is not None and model_hash is not None:
                self._put_examples(model_hash, SEARCH, per_example)
            cursor = self._db.execute(
                "INSERT INTO candidates (config_key, config, kind, status, error, metrics, predicted, model_hash, fingerprint, seconds, worker)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    config_key(config), json.dumps(dict(config)), kind, "error" if error else "ok", error,
                    json.dumps(dict(metrics)), json.dumps(dict(predicted or {})), model_hash, fingerprint, seconds, worker,
                ),
            )  # fmt: skip
        return self.get(cursor.lastrowid)

    def get(self, record_id: int) -> Record:
        row = self._db.execute("SELECT * FROM candidates WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(record_id)
        return self._record(row)

    def records(self, kind: str | None = None) -> list[Record]:
        query, args = (
            ("SELECT * FROM candidates ORDER BY id", ())
            if kind is None
            else ("SELECT * FROM candidates WHERE kind = ? ORDER BY id", (kind,))
        )
        examples: dict[str, dict[str, np.ndarray]] = {}
        for model_hash, role, blob in self._db.execute("SELECT model_hash, role, scores FROM per_example"):
            examples.setdefault(model_hash, {})[role] = np.frombuffer(blob, np.float32)
        return [self._record(row, examples) for row in self._db.execute(query, args)]

    def set_final(self, record_id: int, artifact: str | None, final: Mapping[str, float]) -> None:
        """Where a Pareto candidate's artifact was written, and its end-of-run values."""
        with self._db:
            self._db.execute(
                "UPDATE candidates SET artifact = ?, final = ? WHERE id = ?",
                (artifact, json.dumps(dict(final)), record_id),
            )

    # measurements

    def measurement(self, model_hash: str, fingerprint: str) -> dict[str, float] | None:
        """The latency metrics of a model timed on this fingerprint (``latency_ratio``, its
        interval where it was stored, ``latency_ms``), or None."""
        row = self._db.execute(
            f"SELECT {', '.join(_MEASURED)} FROM measurements WHERE model_hash = ? AND fingerprint = ?", (model_hash, fingerprint)
        ).fetchone()
        return None if row is None else {name: value for name, value in zip(_MEASURED, row) if value is not None}

    def add_measurement(self, model_hash: str, fingerprint: str, metrics: Mapping[str, float]) -> None:
        """Store the latency metrics of a timed model (the names of `measurement`)."""
        with self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO measurements (model_hash, fingerprint, {', '.join(_MEASURED)}) VALUES (?, ?, ?, ?, ?, ?)",
                (model_hash, fingerprint, *(metrics.get(name) for name in _MEASURED)),
            )

    # final scores (an artifact scored on the final split is never scored again)

    def score(self, model_hash: str, evaluator: str) -> float | None:
        row = self._db.execute("SELECT score FROM scores WHERE model_hash = ? AND evaluator = ?", (model_hash, evaluator)).fetchone()
        return row[0] if row else None

    def add_score(self, model_hash: str, evaluator: str, score: float, per_example: np.ndarray | None = None) -> None:
        """A final score of a model (and its per-example scores, kept as the role ``final``)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", (model_hash, evaluator, score))
            if per_example is not None:
                self._put_examples(model_hash, FINAL, per_example)

    def _put_examples(self, model_hash: str, role: str, scores: np.ndarray) -> None:
        blob = np.ascontiguousarray(scores, np.float32).tobytes()
        self._db.execute("INSERT OR REPLACE INTO per_example VALUES (?, ?, ?)", (model_hash, role, blob))

    def _record(self, row: tuple, examples: Mapping[str, dict[str, np.ndarray]] | None = None) -> Record:
        (id_, _, config, kind, status, error, metrics, predicted, model_hash, fingerprint, artifact, seconds, final, worker) = (
            row
        )
        if examples is None and model_hash is not None:
            rows = self._db.execute("SELECT role, scores FROM per_example WHERE model_hash = ?", (model_hash,))
            examples = {model_hash: {role: np.frombuffer(blob, np.float32) for role, blob in rows}}
        return Record(
            id_, json.loads(config), kind, status, error, json.loads(metrics), json.loads(predicted), model_hash,
            fingerprint, artifact, seconds, json.loads(final), worker, dict((examples or {}).get(model_hash, {})),
        )  # fmt: skip
