"""Loading models from files, transformers directories and the zoo; saving them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import onnx_ir as ir

from simq.errors import InvalidArgumentError, ModelLoadError, UnsupportedModelError, first_line
from simq.ir._cleanup import cleanup
from simq.ir._frontends import load_transformers_dir
from simq.ir._refs import zoo_name

__all__ = ["TUNED_MODEL", "ModelSource", "load", "resolve_source", "save"]

# Above this many bytes of weights, `save` writes them to a side file (protobuf caps a single
# message at 2 GiB).
_EXTERNAL_DATA_THRESHOLD = 1 << 30
#: The model file inside a `simq tune` output folder, which a folder source may name.
TUNED_MODEL = "model.onnx"
# Bumped when what an export holds changes, so cached exports of the old kind are redone.
_EXPORT_FORMAT = 4


class ModelSource(Protocol):
    """Anything that resolves a ``zoo:NAME`` to an ONNX file (such as `simq.zoo.Zoo`)."""

    def path(self, name: str) -> Path: ...


def resolve_source(source: str | os.PathLike[str], zoo: ModelSource | None = None) -> Path:
    """The file or folder a model source names: ``zoo:NAME`` (built on first use), a path, or a
    Hugging Face model id already in the local Hugging Face cache (nothing is downloaded).

    Raises:
        ModelLoadError: Nothing by that name exists here.
    """
    text = os.fspath(source)
    name = zoo_name(text)
    if name is not None:
        if zoo is None:
            raise InvalidArgumentError(f"{text}: zoo models need a zoo to resolve them; pass zoo=simq.zoo.Zoo().")
        return zoo.path(name)
    path = Path(text)
    if path.exists() or path.suffix == ".onnx" or text.startswith((".", "/", "~")) or text.count("/") > 1:
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, local_files_only=True))
    except ImportError:
        return path
    except Exception:  # not in the cache (or not an id at all)
        raise ModelLoadError(
            f"{text} is neither a file or folder here nor a model in the local Hugging Face cache; nothing is downloaded: "
            f"fetch it where there is internet (huggingface-cli download {text}) or give its folder."
        ) from None


def load(
    source: str | os.PathLike[str], *, zoo: ModelSource | None = None, clean: bool = True, cache_dir: Path | None = None
) -> ir.Model:
    """Load a model into the IR.

    Args:
        source: An ``.onnx`` file (external data is read from beside it), a local transformers
            model directory or a Hugging Face model id in the local cache (exported with the
            dynamo exporter), a `simq tune` output folder (its ``model.onnx``), or ``zoo:NAME``.
        zoo: Resolves ``zoo:NAME`` sources; required for them.
        clean: Run the cleanup pipeline (shape inference, constant folding, dead-node removal,
            topological sort, unique names), which structure analysis expects.
        cache_dir: Where transformers exports are kept, keyed by the folder's content, so a
            folder is exported once, not on every command.

    Raises:
        ModelLoadError: The file is missing, unreadable or not a valid model.
    """
    path = resolve_source(source, zoo)
    model = _load_path(path, cache_dir)
    _check_types(model, path)
    _check_wiring(model, path)
    if not clean:
        return model
    try:
        return cleanup(model)
    except Exception as e:  # onnx_ir and ONNX inference fail on cycles, dangling inputs and the like
        cause: BaseException = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ModelLoadError(
            f"{path} is not a well-formed graph ({first_line(cause, 150, typed=True)}); "
            "check it with onnx.checker.check_model."
        ) from e


def _check_wiring(model: ir.Model, path: Path) -> None:
    """Every node input must come from somewhere: a dangling name is refused with the node's name."""
    known = {v.name for v in model.graph.inputs} | set(model.graph.initializers)
    for node in model.graph:
        for value in node.inputs:
            if value is not None and value.producer() is None and value.name not in known and value.const_value is None:
                raise ModelLoadError(f"{path}: node {node.name or node.op_type} reads {value.name!r}, which no node, input or initializer provides.")


def _check_types(model: ir.Model, path: Path) -> None:
    """SimQ works on numeric tensors: a string input or output is refused before any work."""
    for value in [*model.graph.inputs, *model.graph.outputs]:
        if value.dtype is not None and value.dtype in (ir.DataType.STRING, ir.DataType.UNDEFINED):
            raise UnsupportedModelError(
                f"{path}: {value.name} is a {value.dtype.name.lower()} tensor; SimQ compiles models with numeric inputs "
                "and outputs (move tokenization or label decoding out of the graph)."
            )


def _folder_digest(folder: Path) -> str:
    """What an export depends on: every file of the folder, and the exporting libraries."""
    import importlib.metadata

    digest = hashlib.sha256(f"export format {_EXPORT_FORMAT}".encode())
    for name in ("simq", "torch", "transformers"):
        try:
            digest.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


def _load_path(path: Path, cache_dir: Path | None = None) -> ir.Model:
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist; give an .onnx file, a transformers model directory or zoo:NAME.")
    if path.is_dir():
        if (path / TUNED_MODEL).is_file() and (path / "tune.json").is_file():  # what simq tune writes
            return _load_path(path / TUNED_MODEL)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a directory without config.json; give an .onnx file or a transformers model directory.")
        if cache_dir is None:
            return load_transformers_dir(path)
        cached = Path(cache_dir) / "exports" / _folder_digest(path) / "model.onnx"
        if not cached.is_file():
            save(load_transformers_dir(path), cached)
        return _load_path(cached)
    try:
        model = ir.load(path)
    except ValueError as e:
        if "outside the base directory" in str(e):
            raise ModelLoadError(
                f"{path} keeps weights outside its own folder; SimQ reads external data only from beside the model (copy it there)."
            ) from e
        raise ModelLoadError(f"{path} is not a valid ONNX model ({type(e).__name__}); check that the file is complete.") from e
    except PermissionError as e:
        raise ModelLoadError(f"{path} is not readable ({e.strerror}); check its permissions.") from e
    except Exception as e:
        raise ModelLoadError(f"{path} is not a valid ONNX model ({type(e).__name__}); check that the file is complete.") from e
    if not len(model.graph) and not model.graph.outputs:
        raise ModelLoadError(f"{path} holds no graph (an empty or non-ONNX file); check that the file is complete.")
    _check_external_data(model, path)
    return model


def _check_external_data(model: ir.Model, path: Path) -> None:
    """Fail now, with a clear message, on weights whose side file is missing or truncated.

    onnx_ir maps external data lazily, so without this a missing file would surface much later
    as an unrelated error.
    """
    folder = path.parent.resolve()
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if not isinstance(tensor, ir.ExternalTensor):
            continue
        data_file = (folder / tensor.location).resolve()
        if folder not in data_file.parents:
            raise ModelLoadError(
                f"{path} keeps weights in {tensor.location}, outside its own folder; SimQ reads external data only from beside the model (copy it there)."
            )
        if not data_file.is_file():
            raise ModelLoadError(f"{path} keeps its weights in {data_file}, which is missing; copy it next to the model.")
        end = (tensor.offset or 0) + (tensor.length or 0)
        if data_file.stat().st_size < end:
            raise ModelLoadError(f"{data_file} is shorter than {path} says; the weights file is truncated.")


def save(model: ir.Model, path: str | os.PathLike[str]) -> Path:
    """Save `model` as ONNX; weights go to ``<name>.data`` beside it when they exceed 1 GiB.

    Everything is written into a temporary folder beside `path` and then moved into place, so
    an interrupted save leaves the previous model (if any) intact and no partial files behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weight_bytes = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    data_name = f"{path.name}.data"
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        if weight_bytes > _EXTERNAL_DATA_THRESHOLD:
            ir.save(model, staged, external_data=data_name)
            os.replace(staged.with_name(data_name), path.with_name(data_name))
        else:
            ir.save(model, staged)
        os.replace(staged, path)
    return path


def model_digest(model: ir.Model) -> str:
    """What identifies a model's graph and weights (caches of its exports, baselines and outputs;
    the store's check that a resumed run compiles the same model)."""
    return hashlib.sha256(ir.to_proto(model).SerializeToString()).hexdigest()
