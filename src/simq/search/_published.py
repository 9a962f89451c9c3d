"""A published model as users take it away: its folder (``pareto/<id>/``), its figures, and the
model loaded in its runtime, answering predictions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simq.errors import ArtifactError, MissingDependencyError
from simq.targets import Artifact, TargetRegistry

__all__ = ["Predictor", "Published", "load_published"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Published:
    """One model of a compile run's published front.

    Attributes:
        id: Its record id (``pareto/<id>/``).
        path: Its folder: the artifact, ``manifest.json``, and what running it needs (the model's
            ``config.json`` with its labels, tokenizer or image-processor files).
        description: What it is (pruning and precisions).
        metrics: Its row of the run's table: ``accuracy`` and ``accuracy_drop`` (test) with
            ``accuracy_drop_low``/``_high``, ``search_accuracy_bound``, ``latency_ratio`` with its
            interval, ``latency_ms``, ``size_mb``, ``size_ratio``.
        config: The knob values it was built from.
    """

    id: int
    path: Path
    description: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    def load(self, *, deployment: bool = True) -> Predictor:
        """The model loaded in its target's runtime with the settings it was measured under
        (`deployment`: without SimQ's timing settings, as a user's own process runs it)."""
        return Predictor(self.path, deployment=deployment)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Copy the model's folder to `folder` (Optimum's layout: ``model.onnx`` or
        ``openvino_model.xml``, ``config.json``, tokenizer files), written whole or not at all."""
        folder = Path(folder)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.path, partial)
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        return folder


def load_published(out: Path, summary: Mapping[str, Any]) -> list[Published]:
    """The published models of a finished run (`summary` is its ``summary.json``), fastest first."""
    models = []
    for row in summary.get("rows", []):
        folder = Path(row.get("artifact") or "")
        if row.get("kind") != "candidate" or not (folder / MANIFEST).is_file():
            continue
        manifest = json.loads((folder / MANIFEST).read_text())
        models.append(Published(int(row["id"]), folder, str(row.get("config", "")), dict(row), manifest.get("config", {})))
    return sorted(models, key=lambda m: m.metrics.get("latency_ratio") or 1.0)


class Predictor:
    """A published model loaded in its runtime.

    ``run(inputs)`` takes the model's inputs by name (arrays, batch first) and returns every
    output; calling it with texts (or images, where an image processor travels with the model)
    preprocesses them as the model was compiled and returns the predicted labels.
    """

    def __init__(self, folder: Path, *, deployment: bool = True) -> None:
        folder = Path(folder)
        if not (folder / MANIFEST).is_file() or not (folder / "artifact.json").is_file():
            raise ArtifactError(f"{folder} is not a published model folder (no manifest.json/artifact.json); give OUT/pareto/<id>.")
        self.folder = folder
        self.manifest = json.loads((folder / MANIFEST).read_text())
        self.artifact = Artifact.load_index(folder)
        self.target = TargetRegistry().get(self.manifest["target"], threads=int(self.manifest["fingerprint"]["threads"]))
        self._run = self.target.load(self.artifact, deployment=deployment)
        config = folder / "config.json"
        self.labels: dict[int, str] = {}
        if config.is_file():
            id2label = json.loads(config.read_text()).get("id2label") or {}
            self.labels = {int(k): str(v) for k, v in id2label.items()}

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self._run(inputs)

    def __call__(self, examples: Sequence[Any]) -> list[str | int]:
        """Predicted labels (names where the model's config has them) of texts or images."""
        logits = self.run(self._preprocess(examples))[0]
        top = logits.reshape(len(logits), -1).argmax(-1)
        return [self.labels.get(int(i), int(i)) for i in top]

    def _preprocess(self, examples: Sequence[Any]) -> dict[str, np.ndarray]:
        try:
            import transformers
        except ImportError as e:
            raise MissingDependencyError("predicting from texts or images needs transformers: pip install 'simq[torch]'.") from e
        names = [name for name in self.manifest.get("inputs", {})]
        if (self.folder / "tokenizer_config.json").is_file() or (self.folder / "tokenizer.json").is_file():
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)
            length = max((shape[1] for shape in self.manifest["inputs"].values() if len(shape) == 2), default=None)
            encoded = tokenizer(list(examples), padding=True, truncation=True, max_length=length, return_tensors="np")
            return {name: encoded[name].astype(np.int64) for name in names if name in encoded}
        if (self.folder / "preprocessor_config.json").is_file():
            processor = transformers.AutoImageProcessor.from_pretrained(self.folder)
            return {names[0]: processor(list(examples), return_tensors="np")["pixel_values"].astype(np.float32)}
        raise ArtifactError(f"{self.folder} carries no tokenizer or image processor; call run() with the model's inputs.")
