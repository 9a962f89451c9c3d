"""Errors a user can cause.

Every subclass carries one sentence that says what went wrong and how to fix it; the CLI
prints that sentence and exits with status 2.
"""

from __future__ import annotations

import re

__all__ = [
    "first_line",
    "SimqError",
    "ModelLoadError",
    "UnknownModelError",
    "UnsupportedModelError",
    "MissingDependencyError",
    "InvalidArgumentError",
    "OutputError",
    "InvalidConfigError",
    "UnknownTargetError",
    "ArtifactError",
    "DataError",
]


class SimqError(Exception):
    """Base class of all errors caused by user input rather than by a bug in SimQ."""


class ModelLoadError(SimqError):
    """A model file or directory is missing, unreadable or corrupt."""


class UnknownModelError(SimqError):
    """A `zoo:NAME` names no model in the zoo."""


class UnsupportedModelError(SimqError):
    """The model uses a construct SimQ cannot handle."""


class MissingDependencyError(SimqError):
    """An optional dependency (an extra) needed for this operation is not installed."""


class InvalidArgumentError(SimqError):
    """An option or argument has an invalid value."""


class OutputError(SimqError):
    """An output file or directory cannot be written."""


class InvalidConfigError(SimqError):
    """A search config names an unknown knob, has a value out of its domain, or is inconsistent."""


class UnknownTargetError(SimqError):
    """No built-in or plugged-in target has this name."""


class ArtifactError(SimqError):
    """A runtime rejected an artifact, or an artifact is missing or unreadable."""


class DataError(SimqError):
    """Data given with --data is missing, unreadable, malformed, or cannot feed the model."""


#: A line that only says where in a native library an error was raised (OpenVINO stacks one per
#: layer it passed through, ``Exception from src/inference/src/cpp/core.cpp:132:``, before the reason).
_WHERE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")


def first_line(error: BaseException, limit: int = 200, *, typed: bool = False) -> str:
    """The first line of an error's message that says what went wrong (not where in a native
    library: `_WHERE`), at most `limit` characters (the error's type name when it has no
    message); with `typed`, prefixed by the type (``RuntimeError: ...``): how a library's
    multi-line error becomes part of one sentence."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reasons = [line for line in lines if not _WHERE.match(line)]
    text = (reasons or lines or [""])[0][:limit]
    if typed:
        return f"{type(error).__name__}: {text}"
    return text or type(error).__name__
