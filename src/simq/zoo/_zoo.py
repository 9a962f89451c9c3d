"""The `Zoo`: named example models built on first use and cached on disk."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from simq import __version__
from simq.errors import InvalidArgumentError, MissingDependencyError, UnknownModelError
from simq.ir import cache_root
from simq.zoo._data import SPLITS, Dataset, load_split, random_dataset
from simq.zoo._registry import RECIPES
from simq.zoo._spec import INFO_FILE, MODEL_FILE, Recipe, ZooEntry

__all__ = ["Zoo", "default_cache_dir"]

_EXTRAS_HINT = "pip install -c constraints.txt 'simq[torch,examples]'"
# A build directory untouched for this long belongs to a build that was killed; a live build
# writes into its directory far more often than this.
_ABANDONED_AFTER_S = 3600


def default_cache_dir() -> Path:
    """The per-user cache directory of built zoo models (``<user cache>/simq/zoo``)."""
    return cache_root() / "zoo"


class Zoo:
    """Named example models and their data, built on first use and cached.

    Each model lives in ``<cache_dir>/<name>/``: ``model.onnx``, ``info.json`` and, for models
    with real data, one ``<split>.npz`` per split. A build happens in a temporary directory that
    is renamed into place when complete, so an interrupted build leaves no half model and the
    next call simply builds again.

    Args:
        cache_dir: Where built models are kept; `default_cache_dir()` when None.
    """

    def __init__(self, cache_dir: Path | str | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._texts: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {}

    def names(self) -> list[str]:
        """The names of all zoo models."""
        return list(RECIPES)

    def entry(self, name: str) -> ZooEntry:
        """The description of model `name`.

        Raises:
            UnknownModelError: No zoo model has that name.
        """
        return self._recipe(name).entry

    def path(self, name: str) -> Path:
        """The ONNX file of model `name`, building it first if it is not cached.

        Building exports (and for real-weight models trains) the model, which takes from seconds
        to a few minutes; later calls only check the cache.

        Raises:
            UnknownModelError: No zoo model has that name.
            MissingDependencyError: Building needs the torch or examples extra.
        """
        recipe = self._recipe(name)
        if not self._is_built(recipe):
            self._build(recipe)
        return self.cache_dir / name / MODEL_FILE

    def data(self, name: str, split: str) -> Dataset:
        """The examples of model `name` for one split.

        Models with real data return their stored split (built with the model); the four splits
        are disjoint, and the model was trained (or its head fit) on ``train`` only. Random-weight
        models return seeded random inputs (32 calibration, 32 validation, 64 test, 256 train
        examples) without labels; those need no build.

        Args:
            name: A zoo model name.
            split: ``"train"``, ``"calibration"``, ``"validation"`` or ``"test"``.

        Raises:
            UnknownModelError: No zoo model has that name.
            InvalidArgumentError: `split` is not one of the four splits.
        """
        recipe = self._recipe(name)
        if split not in SPLITS:
            raise InvalidArgumentError(f"unknown data split {split!r}; use one of {', '.join(SPLITS)}.")
        if not recipe.entry.real_weights:
            return random_dataset(recipe, split)
        self.path(name)
        return load_split(self.cache_dir / name, split)

    def texts(self, name: str, split: str) -> tuple[list[str], np.ndarray]:
        """The raw texts of a real text model's split, with their class indices, in the order of
        `data`'s rows: what a user would hand SimQ instead of token ids. ``spare`` gives the rows
        the splits leave unused that may still be drawn (balanced), for benchmarks that need more.

        Raises:
            InvalidArgumentError: The model has no text data, or `split` is unknown.
        """
        recipe = self._recipe(name)
        builder = importlib.import_module(f"simq.zoo.{recipe.builder}")
        if not recipe.entry.real_weights or not hasattr(builder, "texts"):
            raise InvalidArgumentError(f"zoo model {name!r} has no texts; text splits exist for minilm-tweets.")
        if split not in (*SPLITS, "spare"):
            raise InvalidArgumentError(f"unknown data split {split!r}; use one of {', '.join(SPLITS)} or spare.")
        if name not in self._texts:  # tokenizing the corpus to draw the splits takes seconds: once
            self._texts[name] = builder.texts(recipe)
        return self._texts[name][split]

    def torch_source(self, name: str):
        """The model as PyTorch (`simq.ir.TorchSource`): for `simq tune`, and for the export
        users' tools make (the baselines they run).

        Raises:
            InvalidArgumentError: The zoo keeps no PyTorch form of this model.
        """
        recipe = self._recipe(name)
        builder = importlib.import_module(f"simq.zoo.{recipe.builder}")
        if not hasattr(builder, "torch_source"):
            raise InvalidArgumentError(f"zoo model {name!r} has no PyTorch source; minilm-tweets, the digits models and the single-output transformers models have one.")
        self.path(name)
        return builder.torch_source(recipe, self.cache_dir / name)

    def info(self, name: str) -> dict[str, Any]:
        """The metadata recorded when model `name` was built (building it if needed).

        It holds at least ``params`` (the PyTorch module's parameter count), ``config`` and, for
        trained models, ``test_accuracy`` of the PyTorch model and ``onnx_test_accuracy``.
        """
        self.path(name)
        return json.loads((self.cache_dir / name / INFO_FILE).read_text())

    def _recipe(self, name: str) -> Recipe:
        try:
            return RECIPES[name]
        except KeyError:
            close = difflib.get_close_matches(name, RECIPES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UnknownModelError(f"unknown zoo model {name!r}; {hint}known: {', '.join(RECIPES)}.") from None

    def _is_built(self, recipe: Recipe) -> bool:
        folder = self.cache_dir / recipe.entry.name
        try:
            info = json.loads((folder / INFO_FILE).read_text())
        except (OSError, ValueError):
            return False
        return (folder / MODEL_FILE).is_file() and info.get("recipe_version") == recipe.version

    def _build(self, recipe: Recipe) -> None:
        from rich.console import Console

        name = recipe.entry.name
        try:
            builder = importlib.import_module(f"simq.zoo.{recipe.builder}")
            from simq.zoo._build import versions
        except ImportError as e:
            raise MissingDependencyError(f"building zoo model {name!r} needs {e.name}; install it with {_EXTRAS_HINT}.") from e
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned(name)
        work = self.cache_dir / f".{name}.build-{uuid.uuid4().hex}"
        work.mkdir()  # not tempfile.mkdtemp: its 0700 mode would stay on the installed directory
        try:
            console, message = Console(stderr=True), f"Building zoo model {name} (once; cached in {self.cache_dir})"
            if not console.is_terminal:
                console.print(message)  # a log gets as a line what a terminal shows beside a spinner
            with console.status(message) if console.is_terminal else contextlib.nullcontext():
                start = time.perf_counter()
                info = builder.build(recipe, work)
                info = {
                    "name": name,
                    "description": recipe.entry.description,
                    **info,
                    "seed": recipe.seed,
                    "recipe_version": recipe.version,
                    "build_seconds": round(time.perf_counter() - start, 1),
                    "versions": {"simq": __version__, "python": sys.version.split()[0], **versions()},
                }
                (work / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
            self._install(work, self.cache_dir / name)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _install(self, work: Path, final: Path) -> None:
        """Move a finished build into place, replacing an outdated one."""
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
        if final.exists():
            final.rename(old)
        try:
            os.replace(work, final)
        except OSError:
            # Another process installed the same model in the meantime; keep theirs.
            if not (final / MODEL_FILE).is_file():
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)

    def _remove_abandoned(self, name: str) -> None:
        """Delete temporary directories left by killed builds of `name`."""
        cutoff = time.time() - _ABANDONED_AFTER_S
        for leftover in self.cache_dir.glob(f".{name}.*-*"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue
