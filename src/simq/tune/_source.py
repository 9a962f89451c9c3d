"""The PyTorch side of a model: the module to tune, how to call it, export it and save it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simq.errors import MissingDependencyError, ModelLoadError, UnsupportedModelError

__all__ = ["TorchSource", "transformers_source"]


@dataclass
class TorchSource:
    """A PyTorch model as `simq tune` needs it.

    Attributes:
        module: The model; called with keyword inputs, it returns logits (a tensor) or an output
            with ``logits``.
        input_names: Its inputs, in the order its ONNX export takes them.
        dynamic_axes: Per input, the axes that stay symbolic in the export.
        save: Writes the (tuned) module into a folder in its native form.
        name: What it is called in reports.
    """

    module: Any
    input_names: tuple[str, ...]
    dynamic_axes: Mapping[str, Mapping[int, str]]
    save: Callable[[Any, Path], None]
    name: str

    def logits(self, inputs: Mapping[str, Any]) -> Any:
        out = self.module(**{k: inputs[k] for k in self.input_names})
        return out if not hasattr(out, "logits") else out.logits

    def export(self, example: Mapping[str, np.ndarray]):
        """The module as an ONNX model (dynamo exporter), with the dynamic axes of the source."""
        import torch

        from simq.ir import export_torch

        source = self

        class Logits(torch.nn.Module):  # keyword inputs in, the logits tensor out
            def __init__(self) -> None:
                super().__init__()
                self.inner = source.module

            def forward(self, **inputs):
                return source.logits(inputs)

        tensors = {k: torch.from_numpy(np.asarray(example[k])) for k in self.input_names}
        return export_torch(Logits(), tensors, ["logits"], self.dynamic_axes)


def transformers_source(folder: Path) -> TorchSource:
    """A transformers sequence- or image-classification folder as a tuning source."""
    try:
        import transformers
    except ImportError as e:
        raise MissingDependencyError("simq tune needs torch and transformers: pip install -c constraints.txt 'simq[torch]'.") from e
    from simq.ir import text_inputs

    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{folder} has no config.json; simq tune takes a transformers classifier folder or a zoo model.")
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if cls is None or not architectures[0].endswith(("ForSequenceClassification", "ForImageClassification")):
        raise UnsupportedModelError(f"{folder}: simq tune tunes sequence and image classifiers; this is {architectures[0] if architectures else 'unknown'}.")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    module = cls.from_pretrained(folder, local_files_only=True)
    if getattr(module, "main_input_name", "input_ids") == "pixel_values":
        names: tuple[str, ...] = ("pixel_values",)
        axes = {"pixel_values": {0: "batch"}}
    else:
        names = tuple(text_inputs(Path(folder), module))
        axes = {n: {0: "batch", 1: "seq"} for n in names}

    def save(tuned: Any, out: Path) -> None:
        tuned.save_pretrained(out)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "preprocessor_config.json"):
            if (Path(folder) / name).is_file():
                (out / name).write_bytes((Path(folder) / name).read_bytes())

    return TorchSource(module, names, axes, save, str(folder))
