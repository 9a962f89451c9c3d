"""What a zoo model is: its inputs, outputs and default shapes, and how it is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["INFO_FILE", "MODEL_FILE", "InputSpec", "Recipe", "ZooEntry"]

# The files of a built model in its cache directory, besides one ``<split>.npz`` per data split.
MODEL_FILE = "model.onnx"
INFO_FILE = "info.json"


@dataclass(frozen=True)
class InputSpec:
    """One graph input.

    Attributes:
        name: The input's name in the ONNX graph.
        dtype: Its numpy dtype name, such as ``"int64"`` or ``"float32"``.
        shape: Its shape; a string is a symbolic axis (``"batch"``, ``"seq"``), and axes with the
            same name are the same dimension.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ZooEntry:
    """The public description of a zoo model.

    Attributes:
        name: The name used in ``zoo:NAME``.
        description: One line: what the model is, whether its weights are real or random, and
            what its data is.
        family: ``"bert"``, ``"vit"``, ``"resnet"``, ``"cnn"`` or ``"multimodal"``.
        inputs: The graph inputs, in order.
        outputs: The graph output names, in order.
        signature: Concrete default shape of every input, batch 1.
        real_weights: Whether the weights are pretrained or trained rather than random.
        has_labels: Whether the model's datasets carry labels.
    """

    name: str
    description: str
    family: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    signature: Mapping[str, tuple[int, ...]]
    real_weights: bool
    has_labels: bool

    def __post_init__(self) -> None:
        # Entries are shared by every Zoo in the process; a read-only view keeps them unchanged.
        object.__setattr__(self, "signature", MappingProxyType(dict(self.signature)))


@dataclass(frozen=True)
class Recipe:
    """How to build one zoo model (private to the zoo).

    Attributes:
        entry: The model's public description.
        builder: The zoo module that builds it (``"_transformers_models"``, ``"_tweets"``,
            ``"_digits"``); it is imported only when a build is needed, because builders need the
            optional torch and examples extras.
        seed: Seeds the weights and, for random-weight models, the data.
        options: Builder-specific settings, recorded in ``info.json``.
        vocab_size: For random text inputs: token ids are drawn below it.
        eos_token_id: For random text inputs: the token that ends every sequence, if the model
            pools on it (CLIP does).
        version: Bumped when the recipe changes, so that cached builds of the old one are redone.
    """

    entry: ZooEntry
    builder: str
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    vocab_size: int | None = None
    eos_token_id: int | None = None
    version: int = 1
