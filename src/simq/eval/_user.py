"""User evaluators: a function of the artifact and its loaded runtime (or of an ONNX path),
imported by ``module:function``."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simq.errors import InvalidArgumentError
from simq.eval._evaluators import Evaluator, Run, Score

if TYPE_CHECKING:
    from simq.targets import Artifact

__all__ = ["UserEvaluator", "load_evaluator"]


class UserEvaluator(Evaluator):
    """A user function (higher is better), named by its spec.

    ``f(artifact, run)`` receives the `simq.targets.Artifact` (``artifact.path`` is what the
    runtime loads, ``artifact.onnx`` the ONNX it came from) and ``run(inputs) -> outputs``, the
    artifact already loaded in its runtime, and returns the score, or one score per example (a
    sequence, the same examples in the same order every call: the score is their mean, and
    models are then compared paired). A function of one parameter, ``f(onnx_path)``, receives
    the ONNX file's path as a string (the contract before artifacts were scored).
    """

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self.function, self.name = function, name
        self._takes_run = _positional_parameters(function) >= 2

    def evaluate(self, run: Run, artifact: Artifact | None = None) -> float:
        return self.score(run, artifact).value

    def score(self, run: Run, artifact: Artifact | None = None) -> Score:
        if self._takes_run:
            value = self.function(artifact, run)
        else:
            if artifact is None:
                raise InvalidArgumentError(f"evaluator {self.name} takes an ONNX path; give it an artifact.")
            value = self.function(str(artifact.onnx))
        if isinstance(value, (list, tuple, np.ndarray)):
            try:
                values = np.asarray(value, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"evaluator {self.name} returned a sequence that is not all numbers.") from None
            if not len(values) or not np.isfinite(values).all():
                raise InvalidArgumentError(f"evaluator {self.name} returned per-example scores that are empty or not all finite.")
            return Score(float(values.mean(dtype=np.float64)), values)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"evaluator {self.name} returned {value!r}, not a number.") from None
        if not np.isfinite(value):
            raise InvalidArgumentError(f"evaluator {self.name} returned {value}, not a finite number.")
        return Score(value)

    def evaluate_onnx(self, path: Path) -> float:
        if self._takes_run:
            return super().evaluate_onnx(path)
        return self.evaluate(lambda inputs: [], _OnnxOnly(Path(path)))


class _OnnxOnly:
    """An artifact that is just an ONNX file (for scoring a file outside any target)."""

    def __init__(self, path: Path) -> None:
        self.path = self.onnx = path


def _positional_parameters(function: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature take what they take
        return 1
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in parameters)


def load_evaluator(spec: str) -> UserEvaluator:
    """Import ``module:function``; the current folder is on the import path, so a ``my_eval.py``
    beside the command is found.

    Raises:
        InvalidArgumentError: The spec is malformed, the module cannot be imported, or it has
            no such function.
    """
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise InvalidArgumentError(f"--evaluator {spec!r} is not module:function, e.g. my_eval:accuracy.")
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InvalidArgumentError(f"cannot import evaluator module {module_name!r}: {e}") from None
    except Exception as e:  # the user's module raised while importing
        raise InvalidArgumentError(f"evaluator module {module_name!r} failed to import: {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))
    function = getattr(module, function_name, None)
    if not callable(function):
        raise InvalidArgumentError(f"module {module_name!r} has no function {function_name!r}.")
    return UserEvaluator(function, function_name)
