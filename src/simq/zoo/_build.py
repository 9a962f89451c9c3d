"""Helpers shared by the zoo's builders: seeding, quiet export, checks against ONNX Runtime."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from simq.ir import export_torch, save
from simq.ir import quiet as ir_quiet
from simq.zoo._data import Dataset
from simq.zoo._spec import MODEL_FILE, ZooEntry

__all__ = ["export", "onnx_accuracy", "onnx_max_abs_diff", "param_count", "quiet", "seeded", "threads", "versions"]

# Loggers that chat during export and loading (e.g. torch.onnx warns about torchvision ops it
# skips); a build shows one status line and nothing else.
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "transformers")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for the block without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block on `n` torch threads, so training gives the same weights on any machine size."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings, chatty loggers (`simq.ir.quiet`) and transformers' progress bars for the block."""
    import transformers

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        with ir_quiet(*_NOISY_LOGGERS):
            yield
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def param_count(module: torch.nn.Module) -> int:
    """The module's own parameter count (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def export(module: torch.nn.Module, entry: ZooEntry, example: Mapping[str, np.ndarray], out_dir: Path) -> Path:
    """Export `module` with the entry's inputs, outputs and symbolic axes to ``out_dir/model.onnx``.

    The example must have a batch of at least 2: the exporter specialises axes of size 1.
    """
    axes = {spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in entry.inputs}
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in example.items()}
    with quiet():
        model = export_torch(module.eval(), tensors, list(entry.outputs), axes)
    return save(model, out_dir / MODEL_FILE)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_max_abs_diff(path: Path, module: torch.nn.Module, entry: ZooEntry, example: Mapping[str, np.ndarray]) -> float:
    """Largest absolute difference between the ONNX model and `module` on `example`, over all outputs."""
    got = _session(path).run(list(entry.outputs), dict(example))
    with torch.no_grad():
        out = module.eval()(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in example.items()})
    want = [out] if isinstance(out, torch.Tensor) else [out[name] for name in entry.outputs]
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def onnx_accuracy(path: Path, dataset: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of the ONNX model's first output on a labelled dataset, with ONNX Runtime."""
    session = _session(path)
    hits = 0
    for inputs, labels in dataset.batches(batch_size):
        logits = session.run(None, inputs)[0]
        hits += int((logits.argmax(-1) == labels).sum())
    return hits / len(dataset)


def versions() -> dict[str, Any]:
    """Versions of the libraries that determine the built weights and graph."""
    import onnx
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
