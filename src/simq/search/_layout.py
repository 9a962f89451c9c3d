"""What a published model's folder holds beside the artifact: what running it needs (the model's
config with its labels, tokenizer or image-processor files), in the layout Optimum and
transformers load (``config.json`` and tokenizer files beside the model)."""

from __future__ import annotations

from pathlib import Path

from simq import ir as sir

__all__ = ["RUNTIME_FILES", "runtime_files", "zoo_folder"]

#: Files of a model folder that running an artifact needs besides the model.
RUNTIME_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
    "preprocessor_config.json",
)  # fmt: skip


def runtime_files(*folders: Path | None) -> dict[str, Path]:
    """The tokenizer, processor and config files of the folders, by name (earlier folders win)."""
    found: dict[str, Path] = {}
    for folder in reversed([f for f in folders if f is not None]):
        found |= {name: folder / name for name in RUNTIME_FILES if (folder / name).is_file()}
    return found


def zoo_folder(model_ref: str, path: Path) -> Path | None:
    """The folder of a zoo model's build, which keeps its config and tokenizer (else None)."""
    return path.parent if sir.zoo_name(model_ref) is not None and path.is_file() else None
