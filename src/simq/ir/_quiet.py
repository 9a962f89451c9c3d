"""Keeping libraries' chatter off users' terminals: SimQ's progress is the user's view.

One context manager for every case: named loggers held at ERROR, Python warnings ignored, and,
for libraries that print to the terminal themselves (NNCF's tables, progress bars), stdout and
stderr captured for the block.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

__all__ = ["ROOT_LOGGER", "quiet"]

#: The root logger's name for `quiet`: libraries that log with ``logging.warning(...)`` (ONNX
#: Runtime's quantizer) write there.
ROOT_LOGGER = ""


@contextlib.contextmanager
def quiet(*loggers: str, streams: bool = False) -> Iterator[None]:
    """Silence `loggers` (below ERROR) and warnings for the block; with `streams`, what the
    libraries print to stdout and stderr too. Levels are restored afterwards."""
    named = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in named]
    try:
        for log in named:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            if streams:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            yield
    finally:
        for log, level in zip(named, levels):
            log.setLevel(level)
