"""Frontends: lower PyTorch and transformers models to the IR with the dynamo ONNX exporter."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx_ir as ir

from simq.errors import InvalidArgumentError, MissingDependencyError, ModelLoadError, UnsupportedModelError

if TYPE_CHECKING:
    import torch

__all__ = ["SEQUENCE_LIMIT", "export_torch", "load_transformers_dir", "text_inputs"]

_TORCH_HINT = "install the torch extra: pip install -c constraints.txt 'simq[torch]'"


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"Exporting PyTorch models needs torch; {_TORCH_HINT}.") from e
    return torch


def _wrap(module: torch.nn.Module, input_names: Sequence[str], output_names: Sequence[str]) -> torch.nn.Module:
    """Adapt `module` to positional tensor inputs and a tuple of the named outputs.

    torch.export handles positional arguments most reliably, and selecting outputs here keeps
    auxiliary outputs (hidden states, attentions) out of the graph.
    """
    torch = _import_torch()

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(**dict(zip(input_names, args)))
            if isinstance(out, torch.Tensor):
                return (out,)
            if isinstance(out, Mapping):
                return tuple(out[name] for name in output_names)
            return tuple(out)[: len(output_names)]

    return Wrapped()


def export_torch(
    module: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> ir.Model:
    """Lower a PyTorch module to the IR with the dynamo exporter.

    Args:
        module: The module, called with keyword arguments named like `example_inputs`. It may
            return a tensor, a tuple, or a mapping (such as a transformers `ModelOutput`), from
            which `output_names` are taken in order.
        example_inputs: One example tensor per model input.
        output_names: Names of the graph outputs.
        dynamic_axes: For each input, the axes that stay symbolic and their names (axes with
            the same name are the same dimension, e.g. ``{"input_ids": {0: "batch", 1: "seq"}}``).

    Returns:
        The exported model, not yet cleaned up.

    Raises:
        InvalidArgumentError: A dynamic axis has size 1 in the example; the exporter would
            specialise it to 1, so examples need a batch (and sequence) of at least 2.
    """
    torch = _import_torch()
    for name, axes in (dynamic_axes or {}).items():
        for axis in axes:
            if example_inputs[name].shape[axis] < 2:
                raise InvalidArgumentError(f"example input {name!r} has size 1 on dynamic axis {axis}; use at least 2 so the exporter keeps it symbolic.")
    dims: dict[str, Any] = {}
    dynamic_shapes = tuple(
        {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in (dynamic_axes or {}).get(name, {}).items()}
        or None
        for name in example_inputs
    )
    wrapped = _wrap(module.eval(), list(example_inputs), output_names)
    # The exporter warns about every optional op library it lacks (torchvision's, say).
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                wrapped,
                tuple(example_inputs.values()),
                dynamo=True,
                input_names=list(example_inputs),
                output_names=list(output_names),
                dynamic_shapes=(dynamic_shapes,) if dynamic_axes else None,
                optimize=True,
                verbose=False,
            )
        except Exception as e:
            raise UnsupportedModelError(
                f"torch.onnx.export could not lower {type(module).__name__} ({type(e).__name__}); "
                "export it to ONNX yourself and pass the .onnx file."
            ) from e
        finally:
            exporter_log.setLevel(level)
    return program.model


#: Tokens per example of the export's example input (its sequence axis stays symbolic).
EXPORT_LENGTH = 128
#: ``metadata_props`` key: the longest sequence a text model takes (its position table).
SEQUENCE_LIMIT = "simq.sequence_limit"


def text_inputs(path: Path, model: Any) -> list[str]:
    """The inputs the model's own tokenizer produces and its forward takes (``token_type_ids``
    too, for sentence-pair models), in the tokenizer's order."""
    import inspect

    import transformers

    accepted = set(inspect.signature(model.forward).parameters)
    try:
        names = list(transformers.AutoTokenizer.from_pretrained(path, local_files_only=True).model_input_names)
    except Exception:  # a folder without tokenizer files: the two inputs every text model takes
        names = ["input_ids", "attention_mask"]
    names = [n for n in names if n in accepted]
    return names if "input_ids" in names else ["input_ids", *[n for n in names if n != "input_ids"]]


def _image_size(path: Path, config: Any) -> tuple[int, int]:
    """(height, width) of the images a transformers vision model takes: its config's image_size,
    else what its image processor makes (a convolutional net's config has none), else 224."""
    size = getattr(config, "image_size", None)
    if size:
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    try:
        processor = json.loads((Path(path) / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return 224, 224
    made = processor.get("crop_size") if processor.get("do_center_crop") else None
    made = made or processor.get("size")
    if isinstance(made, int):
        return made, made
    if isinstance(made, Mapping):
        if "height" in made and "width" in made:
            return int(made["height"]), int(made["width"])
        if "shortest_edge" in made:  # resized (and cropped) to a square of that edge
            return int(made["shortest_edge"]), int(made["shortest_edge"])
    return 224, 224


def load_transformers_dir(path: Path) -> ir.Model:
    """Export a local transformers model directory (one with a ``config.json``).

    Text models get every input their tokenizer produces and their forward takes
    (``input_ids``, ``attention_mask``, ``token_type_ids``), with dynamic batch and sequence
    axes, exported at a realistic length (`EXPORT_LENGTH` tokens, within the model's positions);
    vision models get ``pixel_values`` with a dynamic batch axis.
    """
    torch = _import_torch()
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"Loading a transformers directory needs transformers; {_TORCH_HINT}.") from e
    progress_bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a weight-loading bar means nothing to our users
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
        cls = getattr(transformers, architectures[0], None) if architectures else None
        model = (cls or transformers.AutoModel).from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{path} is not a loadable transformers model directory ({e}); check its config.json and weights.") from e
    finally:
        if progress_bars:
            transformers.utils.logging.enable_progress_bar()

    main_input = getattr(model, "main_input_name", "input_ids")
    if main_input == "input_ids":
        seq = min(EXPORT_LENGTH, getattr(config, "max_position_embeddings", EXPORT_LENGTH) or EXPORT_LENGTH)
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(1, max(getattr(config, "vocab_size", 100) or 100, 2), (2, seq), generator=generator)
        inputs = {}
        for name in text_inputs(path, model):
            if name == "input_ids":
                inputs[name] = ids
            elif name == "attention_mask":
                inputs[name] = torch.ones_like(ids)
            else:  # token_type_ids and friends: the first segment
                inputs[name] = torch.zeros_like(ids)
        axes = {name: {0: "batch", 1: "seq"} for name in inputs}
    elif main_input == "pixel_values":
        height, width = _image_size(path, config)
        channels = getattr(config, "num_channels", 3)
        inputs = {"pixel_values": torch.randn(2, channels, height, width)}
        axes = {"pixel_values": {0: "batch"}}
    else:
        raise UnsupportedModelError(
            f"{path}: models whose main input is {main_input!r} are not supported; export it to ONNX yourself."
        )
    with torch.no_grad():
        sample = model(**inputs)
    output_name = "logits" if "logits" in sample else next(iter(sample.keys()))
    exported = export_torch(model, inputs, [output_name], axes)
    if main_input == "input_ids":
        # What a sequence axis may be at most: the signature's default must not pass it.
        exported.metadata_props[SEQUENCE_LIMIT] = str(getattr(config, "max_position_embeddings", seq) or seq)
    return exported
