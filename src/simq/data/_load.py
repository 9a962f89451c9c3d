"""A user's data as model inputs in four roles: the options, the checks before any work, and loading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simq.data._dataset import Dataset
from simq.data._encode import ArrayEncoder, Encoding, ImageEncoder, TextEncoder, encode_labels, load_tokenizer
from simq.data._read import RawData, read_data
from simq.data._roles import ROLES, RolePlan, assign_roles
from simq.data._sources import content_hashes
from simq.errors import DataError
from simq.ir import InputDomain

__all__ = ["DataOptions", "DataSplits", "check_data", "load_data"]

_TEXT_COLUMNS = ("text", "sentence", "sentence1", "content", "review")
_PAIR_COLUMNS = ("text_pair", "sentence2")
_LABEL_COLUMNS = ("label", "labels", "class", "target")
_IMAGE_COLUMNS = ("image", "img", "pixel_values")


@dataclass(frozen=True)
class DataOptions:
    """Where the data is and how to read it (``simq compile --data`` and its column options).

    Attributes:
        path: A table file, a folder of split files, a saved dataset, an image folder or an .npz.
        encoding: Of text files.
        text_column, text_pair_column, label_column, image_column: Column names; by default
            the usual ones (``text``/``sentence``, ``label``, ``image``) where present.
        max_length: Tokens per example; default: the data's 95th percentile within the model's limit.
        tokenizer: A folder with the tokenizer, when the model is not a transformers folder.
        image_size, mean, std: Image preprocessing when the model has no image processor.
        seed: Seeds the carving of roles the data does not name.
        labels: Read the labels (off where only inputs matter, e.g. for timing).
    """

    path: Path
    encoding: str = "utf-8"
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    image_column: str | None = None
    max_length: int | None = None
    tokenizer: Path | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    seed: int = 0
    labels: bool = True


@dataclass(frozen=True)
class _Columns:
    text: str | None
    pair: str | None
    label: str | None
    image: str | None


def _pick(columns: Sequence[str], given: str | None, usual: Sequence[str], what: str, flag: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise DataError(f"{flag} {given!r} is not a column of the data (columns: {', '.join(columns)}).")
        return given
    return next((c for c in usual if c in columns), None)


def _columns(raw: RawData, options: DataOptions) -> _Columns:
    columns = raw.columns()
    if raw.kind == "arrays":
        label = options.label_column or ("labels" if "labels" in columns else None)
        if options.label_column is not None and options.label_column not in columns:
            raise DataError(f"--label-column {options.label_column!r} is not an array of the .npz (arrays: {', '.join(columns)}).")
        return _Columns(None, None, label, None)
    image = _pick(columns, options.image_column, _IMAGE_COLUMNS, "image", "--image-column")
    text = None if image else _pick(columns, options.text_column, _TEXT_COLUMNS, "text", "--text-column")
    if image is None and text is None:
        strings = [c for c in columns if _is_string_column(raw, c)]
        labelish = set(_LABEL_COLUMNS) | ({options.label_column} if options.label_column else set())
        candidates = [c for c in strings if c not in labelish]
        if len(candidates) != 1:
            raise DataError(f"which column holds the text? give --text-column (columns: {', '.join(columns)}).")
        text = candidates[0]
    pair = _pick(columns, options.text_pair_column, _PAIR_COLUMNS, "text pair", "--text-pair-column") if text else None
    label = _pick(columns, options.label_column, _LABEL_COLUMNS, "label", "--label-column")
    return _Columns(text, pair, label if options.labels else None, image)


def _is_string_column(raw: RawData, column: str) -> bool:
    split = next(iter(raw.splits.values()))
    feature = split.features.get(column)
    return getattr(feature, "dtype", None) in ("string", "large_string")


def check_data(options: DataOptions) -> RawData:
    """Read the data and check its columns: what can fail without the model, in about a second.

    Raises:
        DataError: Unreadable data, a named column that does not exist, no text column to be
            found, split names with no role, too few examples.
    """
    raw = read_data(options.path, options.encoding)
    if len(raw) == 0:
        raise DataError(f"{options.path} holds no examples.")
    _columns(raw, options)
    assign_roles({name: _rows(split) for name, split in raw.splits.items()}, options.seed)
    return raw


def _rows(split: Any) -> int:
    return len(next(iter(split.values()))) if isinstance(split, Mapping) else len(split)


@dataclass
class DataSplits:
    """The data in its roles, encoded as model inputs on first use.

    Attributes:
        plan: Where each role's rows come from.
        encoding: How rows became inputs.
        labelled: Whether there are labels (else scores compare with the FP32 model).
        source: What was read.
    """

    plan: RolePlan
    encoding: Encoding
    labelled: bool
    source: str
    synthetic = False
    _raw: RawData = field(repr=False)
    _encode: Any = field(repr=False)
    _labels: Any = field(repr=False)
    _content: Any = field(repr=False)
    _cache: dict[str, Dataset] = field(default_factory=dict, repr=False)

    def role(self, role: str) -> Dataset:
        """The examples of one role (``train``, ``calibration``, ``validation``, ``test``)."""
        if role not in ROLES:
            raise DataError(f"unknown data role {role!r}; roles are {', '.join(ROLES)}.")
        if role not in self._cache:
            if role not in self.plan.parts:
                raise DataError(f"the data has no {role} examples.")
            split, rows = self.plan.parts[role]
            selected = _select(self._raw.splits[split], rows)
            inputs = self._encode(selected)
            self._cache[role] = Dataset(inputs, self._labels(selected) if self.labelled else None)
        return self._cache[role]

    def row_hashes(self, role: str) -> list[str]:
        """Hashes of each example's content as read (text, text pair, image bytes, array row)."""
        self.role(role)  # the role exists
        split, rows = self.plan.parts[role]
        return content_hashes(self._content(_select(self._raw.splits[split], rows)))

    def everything(self) -> Dataset:
        """Every example of every split, in order (to score a finished model on all of it)."""
        parts = [(split, np.arange(_rows(data))) for split, data in self._raw.splits.items()]
        encoded = [(self._encode(selected), self._labels(selected) if self.labelled else None) for selected in (_select(self._raw.splits[s], r) for s, r in parts)]
        inputs = {k: np.concatenate([e[0][k] for e in encoded]) for k in encoded[0][0]}
        return Dataset(inputs, np.concatenate([e[1] for e in encoded]) if self.labelled else None)

    def sizes(self) -> dict[str, int]:
        return {role: len(self.plan.parts[role][1]) for role in ROLES if role in self.plan.parts}

    def describe(self) -> str:
        """One line: the splits and their sizes, and what reading the data changed."""
        return "; ".join([self.plan.describe(), *self.notes])

    @property
    def notes(self) -> list[str]:
        """What reading the data did that a user should know: texts cut, empty texts kept."""
        notes = []
        if not self.labelled:
            notes.append("no labels (no label column; --label-column names one): every model is scored by how often it agrees with FP32's predictions, not by accuracy")
        cut = self.encoding.details.get("cut") if self.encoding.kind == "text" else None
        if cut:
            notes.append(f"texts cut to {self.encoding.details['max_length']} tokens (about {cut:.0%} of them are longer; --max-length changes it)")
        column = self.encoding.details.get("text_column") if self.encoding.kind == "text" else None
        if column is not None and self._raw.kind == "table":
            empty = sum(1 for split in self._raw.splits.values() for v in split[column] if v is None or not str(v).strip())
            if empty:
                notes.append(f"{empty} examples have an empty text; kept (the model sees only its special tokens)")
        return notes


def _select(split: Any, rows: np.ndarray) -> Any:
    if isinstance(split, Mapping):
        return {k: v[rows] for k, v in split.items()}
    return split.select(rows.tolist())


def load_data(
    options: DataOptions,
    inputs: Sequence[InputDomain],
    *,
    model_dir: Path | None = None,
    label2id: Mapping[str, int] | None = None,
    raw: RawData | None = None,
) -> DataSplits:
    """The data of `options` as inputs of a model that takes `inputs`.

    Args:
        model_dir: A transformers folder the model came from: its tokenizer or image processor.
        label2id: The model's class names -> indices, for string labels.
        raw: The data `check_data` already read.

    Raises:
        DataError: The data cannot feed the model (no tokenizer for text, an input it cannot
            produce, labels the model does not know, ...).
    """
    raw = raw if raw is not None else check_data(options)
    columns = _columns(raw, options)
    plan = assign_roles({name: _rows(split) for name, split in raw.splits.items()}, options.seed)
    encoder: Any
    if raw.kind == "arrays":
        encoder = ArrayEncoder(inputs, raw.columns())
    elif columns.image is not None:
        processor = _image_processor(model_dir) if options.image_size is None and options.mean is None else None
        encoder = ImageEncoder(inputs, columns.image, processor, options.image_size, options.mean, options.std)
    else:
        integer = [s for s in inputs if s.is_integer]
        if not integer:
            raise DataError(f"text data cannot feed this model: it takes {', '.join(s.name for s in inputs)}, no token ids.")
        folder = options.tokenizer or model_dir
        if folder is None:
            raise DataError("text data needs the model's tokenizer; give --tokenizer DIR (or compile a transformers folder).")
        split, rows = plan.parts["calibration"]
        sample_rows = _select(raw.splits[split], rows)
        encoder = TextEncoder(load_tokenizer(folder), integer, columns.text, columns.pair, sample_rows, options.max_length)
    class_names = _class_names(raw, columns.label)

    def labels(selected: Any) -> np.ndarray:
        values = selected[columns.label]
        return encode_labels(list(values) if not isinstance(values, np.ndarray) else values, label2id, class_names)

    def content(selected: Any) -> list[bytes]:
        if raw.kind == "arrays":
            names = sorted(k for k in selected if k != "labels")
            return [b"".join(np.ascontiguousarray(selected[n][i]).tobytes() for n in names) for i in range(len(selected[names[0]]))]
        if columns.image is not None:
            return [_image_bytes(image) for image in selected[columns.image]]
        pairs = selected[columns.pair] if columns.pair is not None else None
        return [(str(t) + ("\0" + str(pairs[i]) if pairs is not None else "")).encode("utf-8") for i, t in enumerate(selected[columns.text])]

    splits = DataSplits(plan, encoder.describe(), columns.label is not None, raw.source, raw, encoder, labels, content)
    if columns.label is not None:  # every label must map, before minutes of work
        for role in ROLES:
            if role in plan.parts:
                split, rows = plan.parts[role]
                labels(_select(raw.splits[split], rows))
    return splits


def _image_bytes(image: Any) -> bytes:
    """An image's pixels as bytes (a PIL image, an array, or a datasets image dict)."""
    if isinstance(image, Mapping):
        return bytes(image.get("bytes") or str(image.get("path", "")).encode())
    return np.asarray(image).tobytes()


def _class_names(raw: RawData, label: str | None) -> list[str] | None:
    if label is None or raw.kind == "arrays":
        return None
    feature = next(iter(raw.splits.values())).features.get(label)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _image_processor(model_dir: Path | None) -> Any | None:
    if model_dir is None:
        return None
    try:
        import transformers

        return transformers.AutoImageProcessor.from_pretrained(str(model_dir), local_files_only=True)
    except Exception:  # a folder without preprocessor_config.json: fall back to size/mean/std
        return None
