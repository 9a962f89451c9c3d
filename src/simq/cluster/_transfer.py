"""What crosses between the driver and the cluster: its address checked before Ray retries for
minutes, and artifacts, whose files travel through the object store or are copied once into a
folder every node sees (``--ray-share``)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from simq.errors import InvalidArgumentError, SimqError
from simq.targets import Artifact

__all__ = ["check_reachable", "check_share", "pack", "unpack"]


def _files(artifact: Artifact) -> tuple[Path, list[Path]]:
    files = sorted({artifact.path, artifact.onnx, *artifact.files})
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    artifact.save_index(root)
    return root, [*files, root / "artifact.json"]


def pack(artifact: Artifact, digest: str, share: Path | None) -> dict[str, bytes] | str:
    """An artifact's files by relative path (for the object store), or the folder of the shared
    folder they were copied to."""
    root, files = _files(artifact)
    if share is None:
        return {str(f.relative_to(root)): f.read_bytes() for f in files}
    folder = share / digest
    if not folder.is_dir():
        partial = share / f".{digest}.{os.getpid()}.partial"
        for f in files:
            (partial / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, partial / f.relative_to(root))
        try:
            partial.rename(folder)
        except OSError:  # another worker published the same artifact first
            shutil.rmtree(partial, ignore_errors=True)
    return str(folder)


def unpack(packed: dict[str, bytes] | str, folder: Path) -> Artifact:
    if isinstance(packed, str):
        return Artifact.load_index(Path(packed))
    for name, data in packed.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return Artifact.load_index(folder)


def check_share(share: Path) -> None:
    """Fail early if the shared folder cannot be written.

    Raises:
        InvalidArgumentError: It is not a writable folder.
    """
    if not share.is_dir() or not os.access(share, os.W_OK):
        raise InvalidArgumentError(f"--ray-share {share} is not a writable folder.")


def check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minutes of retries, if a head's host:port does not answer.

    Raises:
        SimqError: Nothing listens there.
    """
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # auto, or a Ray client address: Ray resolves it
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise SimqError(f"cannot join the Ray cluster at {address}: nothing answers there ({e.strerror or e}).") from None
