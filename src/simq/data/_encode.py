"""Turning rows of a user's data into model inputs: text through the model's tokenizer, images
through its image processor (or a given size and normalisation), arrays as they are, labels
through the model's ``label2id``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simq.errors import DataError, MissingDependencyError, first_line
from simq.ir import InputDomain

__all__ = ["model_label2id", "Encoding", "TextEncoder", "ImageEncoder", "ArrayEncoder", "encode_labels", "load_tokenizer", "p95_length"]

#: Shortest sequence a default --max-length may be (tweets can be shorter than the model needs).
_MIN_LENGTH = 8
# Rows tokenized to pick the default length: the 95th percentile is stable well before this.
_LENGTH_SAMPLE = 2000


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise MissingDependencyError("text and image data need transformers; install pip install -c constraints.txt 'simq[torch]'.") from e
    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return transformers


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer saved in `folder` (a transformers model folder or a tokenizer folder)."""
    try:
        return _transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"no tokenizer can be loaded from {folder} ({first_line(e, 150)}); give the folder holding tokenizer.json or vocab.txt with --tokenizer.") from e


def model_label2id(folder: Path | None) -> dict[str, int] | None:
    """A transformers folder's class names -> indices (its config's ``label2id``), or None when
    there is none or only transformers' placeholder names (``LABEL_0``, ...)."""
    if folder is None or not (Path(folder) / "config.json").is_file():
        return None
    try:
        mapping = json.loads((Path(folder) / "config.json").read_text()).get("label2id") or None
    except ValueError:
        return None
    if not mapping or all(str(k).startswith("LABEL_") for k in mapping):
        return None
    return {str(k): int(v) for k, v in mapping.items()}


@dataclass(frozen=True)
class Encoding:
    """How rows became inputs, for the run's summary and recipe."""

    kind: str
    details: Mapping[str, Any]


def _max_positions(tokenizer: Any, inputs: Sequence[InputDomain]) -> int | None:
    """The longest sequence the model takes: a fixed sequence axis, else the smaller of its
    position table and the tokenizer's limit."""
    for spec in inputs:
        if spec.is_integer and len(spec.shape) == 2 and spec.fixed(1) is not None:
            return spec.fixed(1)
    limit = getattr(tokenizer, "model_max_length", None)
    limits = [int(limit)] if isinstance(limit, int) and 0 < limit < 100_000 else []
    limits += [s.positions for s in inputs if s.positions is not None]
    return min(limits) if limits else None


def p95_length(lengths: Sequence[int]) -> int:
    return int(np.ceil(np.percentile(np.asarray(lengths), 95)))


class TextEncoder:
    """Text (and text pairs) through the tokenizer, padded and truncated to one length.

    Args:
        max_length: Tokens per example; by default the 95th percentile of the data's tokenized
            lengths within what the model takes (a fixed sequence axis wins over everything).
    """

    def __init__(
        self,
        tokenizer: Any,
        inputs: Sequence[InputDomain],
        text_column: str,
        pair_column: str | None,
        sample: Sequence[Any],
        max_length: int | None = None,
    ) -> None:
        self.tokenizer, self.inputs = tokenizer, list(inputs)
        self.text_column, self.pair_column = text_column, pair_column
        limit = _max_positions(tokenizer, inputs)
        fixed = next((s.fixed(1) for s in inputs if s.is_integer and len(s.shape) == 2 and s.fixed(1) is not None), None)
        if fixed is not None:
            if max_length is not None and max_length != fixed:
                raise DataError(f"the model takes exactly {fixed} tokens; --max-length {max_length} cannot feed it.")
            self.max_length = fixed
        elif max_length is not None:
            if limit is not None and max_length > limit:
                raise DataError(f"--max-length {max_length} exceeds the {limit} tokens the model takes.")
            self.max_length = max_length
        else:
            self.max_length = max(_MIN_LENGTH, min(p95_length(self._lengths(sample)), limit or 10**9))
        #: Share of a sample of the texts that is longer than `max_length` tokens (cut to it).
        self.cut = float(np.mean(np.asarray(self._lengths(sample)) > self.max_length))
        produced = set(tokenizer(*self._texts(sample[:1]), padding="max_length", max_length=self.max_length, truncation=True).keys())
        missing = [s.name for s in inputs if s.name not in produced]
        if missing:
            raise DataError(f"the tokenizer produces {', '.join(sorted(produced))}, but the model also takes {', '.join(missing)}; this data cannot feed it.")

    def _lengths(self, sample: Sequence[Any]) -> list[int]:
        """Untruncated token counts of a sample of the texts."""
        return [len(ids) for ids in self.tokenizer(*self._texts(sample[:_LENGTH_SAMPLE]))["input_ids"]]

    def _texts(self, rows: Any) -> tuple[list[str], ...]:
        def column(name: str) -> list[str]:
            values = rows[name] if not isinstance(rows, list) else [r[name] for r in rows]
            # An empty cell reads as None: the example is kept with an empty text (counted in the notes).
            values = ["" if v is None else v for v in values]
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                raise DataError(f"column {name!r} holds {type(values[bad]).__name__} values (row {bad}); text columns hold strings.")
            return list(values)

        texts = column(self.text_column)
        return (texts, column(self.pair_column)) if self.pair_column else (texts,)

    def __call__(self, rows: Any) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(*self._texts(rows), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np")
        return {s.name: np.asarray(encoded[s.name]).astype(s.dtype) for s in self.inputs}

    def describe(self) -> Encoding:
        return Encoding(
            "text", {"text_column": self.text_column, "text_pair_column": self.pair_column, "max_length": self.max_length, "cut": self.cut}
        )  # fmt: skip


class ImageEncoder:
    """Images resized and normalised as the model expects: its image processor if it has one,
    else ``size``, ``mean`` and ``std`` (per channel, on values scaled to [0, 1])."""

    def __init__(
        self,
        inputs: Sequence[InputDomain],
        image_column: str,
        processor: Any | None = None,
        size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        floats = [s for s in inputs if not s.is_integer]
        if len(floats) != 1 or len(floats[0].shape) != 4:
            raise DataError(f"images feed one (batch, channels, height, width) input; the model takes {', '.join(s.name for s in inputs)}.")
        self.input, self.column, self.processor = floats[0], image_column, processor
        channels = self.input.fixed(1) or 3
        self.mode = {1: "L", 3: "RGB"}.get(channels)
        if self.mode is None:
            raise DataError(f"{self.input.name} takes {channels} channels; images give 1 (grey) or 3 (RGB).")
        height = self.input.fixed(2) or size or 224
        width = self.input.fixed(3) or size or 224
        if size is not None and (self.input.fixed(2) or size) != size:
            raise DataError(f"the model takes {self.input.fixed(2)}x{self.input.fixed(3)} images; --image-size {size} cannot feed it.")
        self.size = (height, width)
        self.mean = np.asarray(mean if mean is not None else [0.0] * channels, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std if std is not None else [1.0] * channels, np.float32).reshape(-1, 1, 1)
        for name, values in (("--mean", self.mean), ("--std", self.std)):
            if values.size not in (1, channels):
                raise DataError(f"{name} gives {values.size} values; the model's images have {channels} channels.")

    def __call__(self, rows: Any) -> dict[str, np.ndarray]:
        images = [image.convert(self.mode) for image in rows[self.column]]
        if self.processor is not None:
            pixels = np.asarray(self.processor(images=images, return_tensors="np")["pixel_values"], np.float32)
            fixed = (self.input.fixed(2), self.input.fixed(3))
            if any(want and want != got for want, got in zip(fixed, pixels.shape[2:])):
                raise DataError(
                    f"the model folder's image processor makes {pixels.shape[2]}x{pixels.shape[3]} images, but the model takes "
                    f"{fixed[0]}x{fixed[1]}; give --image-size {fixed[0]} (with --mean and --std as the model was trained) or fix preprocessor_config.json."
                )
        else:
            resized = [np.asarray(image.resize(self.size[::-1]), np.float32) / 255.0 for image in images]
            pixels = np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in resized])
            pixels = (pixels - self.mean) / self.std
        return {self.input.name: pixels.astype(self.input.dtype)}

    def describe(self) -> Encoding:
        how = "the model's image processor" if self.processor is not None else f"{self.size[0]}x{self.size[1]}, mean {self.mean.ravel().tolist()}, std {self.std.ravel().tolist()}"
        return Encoding("images", {"image_column": self.column, "preprocessing": how})


class ArrayEncoder:
    """Arrays named like the model's inputs, taken as they are (cast to the input's type)."""

    def __init__(self, inputs: Sequence[InputDomain], columns: Sequence[str]) -> None:
        missing = [s.name for s in inputs if s.name not in columns]
        if missing:
            raise DataError(f"the arrays have no {', '.join(missing)}; name one array after each model input ({', '.join(s.name for s in inputs)}).")
        self.inputs = list(inputs)

    def __call__(self, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for spec in self.inputs:
            array = np.asarray(rows[spec.name])
            if array.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != a for i, (d, a) in enumerate(zip(spec.shape, array.shape)) if i > 0
            ):
                raise DataError(f"array {spec.name} has shape {list(array.shape)}; the model takes {list(spec.shape)} (batch first).")
            out[spec.name] = array.astype(spec.dtype)
        return out

    def describe(self) -> Encoding:
        return Encoding("arrays", {"inputs": [s.name for s in self.inputs]})


def encode_labels(values: Sequence[Any], label2id: Mapping[str, int] | None, names: Sequence[str] | None = None) -> np.ndarray:
    """Class indices: integers as they are, strings (or class names) through `label2id`.

    Raises:
        DataError: A string label the model does not know, or string labels without a label2id.
    """
    missing = next((i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and np.isnan(v))), None)
    if missing is not None:
        raise DataError(f"example {missing} has no label; give every example one, or no label column at all.")
    if names is not None:  # an image folder's classes, by folder name
        if label2id and all(n in label2id for n in names):
            return np.asarray([label2id[names[v]] for v in values], np.int64)
        return np.asarray(values, np.int64)
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        if np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        raise DataError("labels hold fractional or missing numbers; give class indices or class names.")
    if label2id is None:
        raise DataError(
            "string labels need the model's class names (label2id in a transformers folder's config.json), and this model has "
            "none or only the placeholders LABEL_0, LABEL_1, ...; give class indices 0..C-1, or name the classes in config.json."
        )
    unknown = sorted({str(v) for v in values} - set(label2id))
    if unknown:
        raise DataError(f"label {unknown[0]!r} is not one of the model's classes ({', '.join(list(label2id)[:8])}).")
    return np.asarray([label2id[str(v)] for v in values], np.int64)
