"""The model as the user's own tools export it, for the baselines they run (made once, cached).

Users who run ONNX Runtime's transformers optimizer get their ONNX from Optimum: the TorchScript
exporter with eager attention, the graph that optimizer recognises. SimQ's own export (dynamo) is
not that graph, so a baseline built on it would be a weaker bar than the one users have. Where the
model has a PyTorch source (a zoo model, a transformers folder, a `simq tune` output), the tools
export is made from it once and kept under the cache root, keyed by the model's digest.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from simq import ir as sir
from simq.errors import SimqError, first_line
from simq.eval import onnx_runner
from simq.ir import ToolsExport, TorchSource, transformers_source, zoo_model_of

__all__ = ["export_for_tools", "tools_exports"]

# The tools export must compute what SimQ's reference computes (same weights, same head): a
# source that does not is not the user's model, and its baseline would mislead.
_AGREEMENT = 1e-3


def _same_outputs(path: Path, reference: Callable[[Mapping[str, np.ndarray]], list[np.ndarray]], example: Mapping[str, np.ndarray]) -> bool:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if {i.name for i in session.get_inputs()} != set(example):
        return False
    theirs, ours = session.run(None, dict(example))[0], reference(example)[0]
    scale = max(float(np.abs(ours).max()), 1.0)
    return theirs.shape == ours.shape and float(np.abs(theirs - ours).max()) <= _AGREEMENT * scale


def _sources(model_ref: str, source_dir: Path | None, elastic: Mapping[str, Any] | None, zoo: Any) -> list[tuple[str, Callable[[], TorchSource]]]:
    """(label, how to get the PyTorch source) for the compiled model and, for a tuned folder, the
    model before tuning."""
    found: list[tuple[str, Callable[[], TorchSource]]] = []
    name = zoo_model_of(model_ref)
    if elastic is None:
        if name is not None and zoo is not None:
            found.append(("", lambda: zoo.torch_source(name)))
        elif source_dir is not None and (source_dir / "config.json").is_file():
            found.append(("", lambda: transformers_source(source_dir)))
        return found
    folder = Path(model_ref)
    tuned = folder / "model"
    if name is not None and zoo is not None:
        found.append(("original", lambda: zoo.torch_source(name)))
        if (tuned / "model.pt").is_file():
            found.append(("", lambda: _with_state(zoo.torch_source(name), tuned / "model.pt")))
        return found
    original = Path(str(elastic.get("source", "")))
    if (original / "config.json").is_file():
        found.append(("original", lambda: transformers_source(original)))
    if (tuned / "config.json").is_file():
        found.append(("", lambda: transformers_source(tuned)))
    return found


def _with_state(source: TorchSource, weights: Path) -> TorchSource:
    import torch

    source.module.load_state_dict(torch.load(weights, weights_only=True))
    return source


def tools_exports(
    model_ref: str,
    source_dir: Path | None,
    elastic: Mapping[str, Any] | None,
    zoo: Any,
    references: Mapping[str, tuple[str, Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]]],
    example: Mapping[str, np.ndarray],
    cache: Path,
) -> tuple[list[ToolsExport], list[str]]:
    """The tools exports of the compiled model (label ``""``) and, for a tuned folder, of the
    model before tuning (``"original"``), and notes on any that could not be made.

    Args:
        references: By label: the digest of SimQ's ONNX of that model and a function running it,
            to key the cache and check the export computes the same outputs.
        example: Inputs with a batch of at least 2 to trace with, named like the model's inputs.
    """
    exports, notes = [], []
    for label, get_source in _sources(model_ref, source_dir, elastic, zoo):
        if label not in references:
            continue
        digest, reference = references[label]
        what = "the model before tuning" if label else "the model"
        folder = cache / digest[:24]
        record = folder / "export.json"
        try:
            if record.is_file():
                exports.append(ToolsExport(folder / "model.onnx", **json.loads(record.read_text())))
                continue
            folder.mkdir(parents=True, exist_ok=True)
            export = get_source().export_for_tools(example, folder / "model.onnx", label)
            if not _same_outputs(export.path, reference, example):
                export.path.unlink()
                notes.append(f"the PyTorch source of {what} computes other outputs than its ONNX; the baselines of users' tools start from SimQ's model instead.")
                continue
            fields = {"model_type": export.model_type, "num_heads": export.num_heads, "hidden_size": export.hidden_size, "label": label}
            (folder / "export.json.partial").write_text(json.dumps(fields))
            (folder / "export.json.partial").replace(record)
            exports.append(export)
        except (SimqError, ImportError, OSError, RuntimeError) as e:
            notes.append(f"no export of {what} as users' tools make it ({first_line(e)}).")
    return exports, notes


def export_for_tools(
    model: ir.Model,
    original: ir.Model | None,
    model_ref: str,
    source_dir: Path | None,
    elastic: Mapping[str, Any] | None,
    zoo: Any,
    batch: Mapping[str, np.ndarray],
    cache: Path,
) -> tuple[list[ToolsExport], list[str]]:
    """`tools_exports` for a job's model and, for a tuned folder (`model_ref`), its `original`."""
    example = {k: v[:2] for k, v in batch.items()}
    with tempfile.TemporaryDirectory() as tmp:
        references = {"": (sir.model_digest(model), onnx_runner(sir.save(model, Path(tmp) / "model.onnx")))}
        if original is not None:
            references["original"] = (sir.model_digest(original), onnx_runner(sir.save(original, Path(tmp) / "original.onnx")))
        return tools_exports(model_ref, source_dir, elastic, zoo, references, example, cache)
