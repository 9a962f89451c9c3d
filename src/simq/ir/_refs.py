"""What a model reference names: ``zoo:NAME``, a path (an .onnx file, a transformers folder, a
`simq tune` output folder) or a Hugging Face id in the local cache. The one place that spells
the ``zoo:`` prefix and reads which model a tuned folder came from."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["TUNE_RECORD", "ZOO_PREFIX", "tuned_source", "zoo_model_of", "zoo_name"]

ZOO_PREFIX = "zoo:"
#: What `simq tune` writes into its output folder: settings, data, and the ``source`` it tuned.
TUNE_RECORD = "tune.json"


def zoo_name(ref: str | os.PathLike[str]) -> str | None:
    """NAME of a ``zoo:NAME`` reference, else None."""
    text = os.fspath(ref)
    return text[len(ZOO_PREFIX) :] if text.startswith(ZOO_PREFIX) else None


def tuned_source(ref: str | os.PathLike[str]) -> str | None:
    """The reference a `simq tune` output folder was tuned from (its tune.json says), else None."""
    record = Path(os.fspath(ref)) / TUNE_RECORD
    if not record.is_file():
        return None
    try:
        source = json.loads(record.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None  # not one of ours: loading the folder reports what is wrong with it
    return str(source) if source else None


def zoo_model_of(ref: str | os.PathLike[str]) -> str | None:
    """The zoo model whose splits score a job: ``zoo:NAME`` itself, or the zoo model a `simq tune`
    output folder was tuned from."""
    name = zoo_name(ref)
    if name is not None:
        return name
    source = tuned_source(ref)
    return zoo_name(source) if source is not None else None
