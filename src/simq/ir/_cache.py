"""Where SimQ keeps what it builds once: zoo models, exports, baselines, reference outputs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["cache_root"]


def cache_root(given: str | os.PathLike[str] | None = None) -> Path:
    """`given` (``--cache-dir``), else the user cache directory's ``simq`` folder."""
    return Path(given) if given else Path(platformdirs.user_cache_dir("simq"))
