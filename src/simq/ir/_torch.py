"""The PyTorch side of a model: the module to tune, how to call it, export it and save it; and
the export users' own tools make of it (TorchScript, eager attention), which ORT's transformers
optimizer recognises."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simq.errors import MissingDependencyError, ModelLoadError, UnsupportedModelError

__all__ = ["TOOLS_OPSET", "TorchSource", "ToolsExport", "transformers_source"]

#: The opset Optimum exports BERT-like models at (its ONNX configs' default).
TOOLS_OPSET = 14


@dataclass(frozen=True)
class ToolsExport:
    """A model as the user's own tools export it (Optimum's route: the TorchScript exporter with
    eager attention), the graph ORT's transformers optimizer fuses.

    Attributes:
        path: The ONNX file.
        model_type: The transformers model type (``bert``, ``vit``, ``clip``, ...).
        num_heads, hidden_size: What Optimum tells ORT's optimizer (from the model's config):
            transformers 5 reshapes heads with a -1, so the optimizer cannot read them off the graph.
            Both 0 where the config has no one head count (Swin's heads per stage).
        label: Empty for the model being compiled; ``original`` for the model before `simq tune`.
    """

    path: Path
    model_type: str
    num_heads: int
    hidden_size: int
    label: str = ""


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
        model_type: The transformers model type of its encoder (``bert``, ``vit``, ...), if known.
    """

    module: Any
    input_names: tuple[str, ...]
    dynamic_axes: Mapping[str, Mapping[int, str]]
    save: Callable[[Any, Path], None]
    name: str
    model_type: str | None = None

    def logits(self, inputs: Mapping[str, Any]) -> Any:
        out = self.module(**{k: inputs[k] for k in self.input_names})
        return out if not hasattr(out, "logits") else out.logits

    def export(self, example: Mapping[str, np.ndarray]):
        """The module as an ONNX model (dynamo exporter), with the dynamic axes of the source."""
        import torch

        from simq.ir._frontends import export_torch

        source = self

        class Logits(torch.nn.Module):  # keyword inputs in, the logits tensor out
            def __init__(self) -> None:
                super().__init__()
                self.inner = source.module

            def forward(self, **inputs):
                return source.logits(inputs)

        tensors = {k: torch.from_numpy(np.asarray(example[k])) for k in self.input_names}
        return export_torch(Logits(), tensors, ["logits"], self.dynamic_axes)

    def export_for_tools(self, example: Mapping[str, np.ndarray], path: Path, label: str = "") -> ToolsExport:
        """Export the module as Optimum does (`ToolsExport`) to `path`, written whole or not at all.

        Raises:
            UnsupportedModelError: The TorchScript exporter cannot trace the module, or it has
                no transformers encoder to read its heads and width from.
        """
        import torch

        configs = [m.config for m in self.module.modules() if hasattr(m, "config") and hasattr(m.config, "num_attention_heads")]
        if not configs:
            raise UnsupportedModelError(f"{self.name} has no transformers encoder whose heads and width ORT's optimizer could be told.")
        config = getattr(configs[0], "text_config", None) or configs[0]
        source = self

        class Logits(torch.nn.Module):  # positional inputs in the source's order, the logits out
            def __init__(self) -> None:
                super().__init__()
                self.inner = source.module

            def forward(self, *inputs):
                return source.logits(dict(zip(source.input_names, inputs)))

        tensors = tuple(torch.from_numpy(np.ascontiguousarray(example[k])) for k in self.input_names)
        partial = Path(path).with_name(Path(path).name + ".partial")
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)
        try:
            with _eager_attention(self.module), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    Logits().eval(), tensors, str(partial), input_names=list(self.input_names), output_names=["logits"],
                    dynamic_axes={k: dict(v) for k, v in self.dynamic_axes.items()}, opset_version=TOOLS_OPSET, dynamo=False,
                )  # fmt: skip
        except Exception as e:
            partial.unlink(missing_ok=True)
            raise UnsupportedModelError(f"the TorchScript exporter cannot trace {self.name} ({type(e).__name__}).") from e
        finally:
            exporter_log.setLevel(level)
        partial.replace(path)
        model_type = self.model_type or getattr(configs[0], "model_type", None) or "bert"
        heads, hidden = config.num_attention_heads, getattr(config, "hidden_size", 0)
        if not isinstance(heads, int):  # heads per stage (Swin): the optimizer reads both off the graph
            heads = hidden = 0
        return ToolsExport(Path(path), str(model_type), heads, hidden, label)


@contextlib.contextmanager
def _eager_attention(module: Any) -> Iterator[None]:
    """Every transformers model inside `module` with eager attention while the context lasts:
    with transformers 5's default SDPA attention ORT's optimizer fuses no Attention (Optimum
    exports with eager for that reason)."""
    models = [m for m in module.modules() if hasattr(m, "set_attn_implementation") and hasattr(m, "config")]
    before = [m.config._attn_implementation for m in models]
    for m in models:
        m.set_attn_implementation("eager")
    try:
        yield
    finally:
        for m, implementation in zip(models, before):
            m.set_attn_implementation(implementation or "sdpa")


def transformers_source(folder: Path) -> TorchSource:
    """A transformers sequence- or image-classification folder as a tuning source."""
    try:
        import transformers
    except ImportError as e:
        raise MissingDependencyError("simq tune needs torch and transformers: pip install -c constraints.txt 'simq[torch]'.") from e
    from simq.ir._frontends import text_inputs

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

    return TorchSource(module, names, axes, save, str(folder), getattr(module.config, "model_type", None))
