"""Reading a user's data as it is on disk: tables and saved datasets through `datasets`, arrays from ``.npz``.

`datasets` keeps tables as memory-mapped Arrow, so a file larger than memory is read without
loading it whole. Each named split on disk keeps its name here; `simq.data.assign_roles` decides
what each one is for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simq.errors import DataError, MissingDependencyError, first_line

__all__ = ["FILE_READERS", "IMAGE_SUFFIXES", "RawData", "TABLE_SUFFIXES", "read_data"]

#: File suffixes read as tables, and the `datasets` builder for each.
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: The name of the one split of data that came without split names.
UNNAMED = "data"


@dataclass(frozen=True)
class RawData:
    """A user's data before encoding: splits by the names they had on disk.

    Attributes:
        splits: Split name -> a `datasets.Dataset` (tables, saved datasets, image folders) or a
            mapping of numpy arrays (``.npz``).
        source: What was read, for messages.
        kind: ``"table"``, ``"images"`` or ``"arrays"``.
    """

    splits: Mapping[str, Any]
    source: str
    kind: str

    def columns(self) -> list[str]:
        first = next(iter(self.splits.values()))
        return list(first.keys()) if isinstance(first, Mapping) else list(first.column_names)

    def __len__(self) -> int:
        return sum(_rows(s) for s in self.splits.values())


def _rows(split: Any) -> int:
    return len(next(iter(split.values()))) if isinstance(split, Mapping) else len(split)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:  # a core dependency; only a broken install lacks it
        raise MissingDependencyError("reading --data needs the datasets package; reinstall simq.") from e
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    return datasets


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """`datasets` must not look for anything online: everything here is a local file."""
    before = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if before is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = before


def _first_bad_line(path: Path, encoding: str) -> int | None:
    """The 1-based number of the first line of `path` that does not decode in `encoding`."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                return number
    return None


def _check_encoding(files: Mapping[str, Path], encoding: str) -> None:
    for path in files.values():
        if path.suffix == ".parquet":
            continue
        try:
            "".encode(encoding)
        except LookupError:
            raise DataError(f"--encoding {encoding!r} is not an encoding Python knows; try utf-8 or latin-1.") from None
        line = _first_bad_line(path, encoding)
        if line is not None:
            raise DataError(f"{path} line {line} is not valid {encoding}; give the file's encoding with --encoding (e.g. latin-1).")


def _lines(path: Path, enough: int) -> int:
    """Non-empty lines of `path`, counted up to `enough`."""
    count = 0
    with path.open("rb") as f:
        for line in f:
            count += bool(line.strip())
            if count >= enough:
                break
    return count


def _tables(files: Mapping[str, Path], encoding: str) -> dict[str, Any]:
    builders = {TABLE_SUFFIXES[p.suffix.lower()] for p in files.values()}
    if len(builders) > 1:
        raise DataError(f"the split files mix formats ({', '.join(sorted(p.name for p in files.values()))}); use one format.")
    builder = builders.pop()
    _check_encoding(files, encoding)
    options: dict[str, Any] = {"encoding": encoding} if builder == "csv" else {}
    if builder == "csv" and all(p.suffix.lower() == ".tsv" for p in files.values()):
        options["sep"] = "\t"
    for split, path in files.items():
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty; give a file with a header row and at least one example.")
        if builder == "csv" and _lines(path, 2) < 2:
            raise DataError(f"{path} has a header but no examples; add rows below it.")
    try:
        with _offline():
            loaded = _datasets().load_dataset(builder, data_files={k: str(v) for k, v in files.items()}, **options)
    except DataError:
        raise
    except Exception as e:  # datasets and pyarrow raise many types for malformed files
        raise DataError(f"cannot read {', '.join(str(p) for p in files.values())} as {builder}: {first_line(e)}") from e
    return dict(loaded)


def _images(folder: Path) -> dict[str, Any]:
    try:
        with _offline():
            loaded = _datasets().load_dataset("imagefolder", data_dir=str(folder))
    except Exception as e:
        raise DataError(f"cannot read {folder} as an image folder (one subfolder per class): {first_line(e)}") from e
    splits = dict(loaded)
    if len(splits) == 1 and "train" in splits and not (folder / "train").is_dir():
        splits = {UNNAMED: splits["train"]}  # datasets calls a folder without split folders "train"
    return splits


def _arrays(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as e:  # zip errors, pickled objects, truncated files
        raise DataError(f"cannot read {path} as an .npz of arrays: {type(e).__name__}: {str(e)[:150]}") from e
    if not arrays:
        raise DataError(f"{path} holds no arrays; save one array per model input (and optionally labels).")
    lengths = {key: len(a) if a.ndim else 0 for key, a in arrays.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        described = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise DataError(f"the arrays in {path} disagree on the number of examples ({described}); give every array the same length on axis 0.")
    return {UNNAMED: arrays}


def _from_hub_cache(name: str) -> RawData | None:
    """A Hugging Face dataset id (``imdb``, ``stanfordnlp/imdb``) the local datasets cache already
    holds, with the splits it has; None when the cache has no such dataset."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).suffix:
        return None
    try:
        with _offline():
            loaded = _datasets().load_dataset(name)
    except Exception:  # not cached (or not a dataset id at all)
        return None
    return RawData(dict(loaded), f"{name} (from the local datasets cache)", "table")


def _split_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES}


def _table_file(path: Path, encoding: str) -> RawData:
    return RawData(_tables({UNNAMED: path}, encoding), str(path), "table")


def _array_file(path: Path, encoding: str) -> RawData:
    return RawData(_arrays(path), str(path), "arrays")


#: How a data file is read, by suffix: ``reader(path, encoding) -> RawData``. A new data format is
#: its reader and one entry here; roles, encoding and hashing follow from `RawData`.
FILE_READERS: dict[str, Callable[[Path, str], RawData]] = {**dict.fromkeys(TABLE_SUFFIXES, _table_file), ".npz": _array_file}


def read_data(path: Path, encoding: str = "utf-8") -> RawData:
    """Read `path`: a CSV/TSV, JSON Lines or Parquet file; a folder of such files named after
    their splits (``train.csv``, ``validation.csv``, ...); a folder saved by
    ``datasets.Dataset.save_to_disk``; an image folder (one subfolder per class, optionally inside
    split folders); or an ``.npz`` of arrays named like the model's inputs (plus ``labels``).

    Raises:
        DataError: The path is missing, of an unknown kind, empty, malformed, or its text does
            not decode in `encoding` (naming the line).
    """
    path = Path(path)
    if not path.exists():
        cached = _from_hub_cache(str(path))
        if cached is not None:
            return cached
        raise DataError(
            f"--data {path} does not exist, neither as a path nor as a dataset in the local datasets cache "
            "(nothing is downloaded: load it once where there is internet, or give its files)."
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in FILE_READERS:
            return FILE_READERS[suffix](path, encoding)
        raise DataError(f"--data {path}: unknown kind of file; give a {', '.join(FILE_READERS)} file, or a folder.")
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        try:
            with _offline():
                loaded = _datasets().load_from_disk(str(path))
        except Exception as e:
            raise DataError(f"cannot read {path} as a saved dataset: {first_line(e)}") from e
        return RawData(dict(loaded) if hasattr(loaded, "keys") else {UNNAMED: loaded}, str(path), "table")
    files = _split_files(path)
    if files:
        return RawData(_tables(files, encoding), str(path), "table")
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()):
        return RawData(_images(path), str(path), "images")
    raise DataError(f"--data {path} is a folder with no data SimQ can read (tables named after splits, a saved dataset, or images in class folders).")
