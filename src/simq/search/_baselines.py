"""Baselines built once per model, target fingerprint and calibration data, and read back after.

NNCF's post-training quantization of bert-base takes minutes; a second `simq compile` of the
same model on the same machine reuses what the first built.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from simq.targets import Artifact

__all__ = ["cached_baselines"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def cached_baselines(
    builders: Mapping[str, Callable[[Path], Artifact]], folder: Path, key: str
) -> dict[str, Callable[[Path], Artifact]]:
    """`builders`, each building into ``folder/<key digest>/<name>/`` the first time and reading
    that folder every time after (a build that fails or is killed leaves nothing behind).

    Args:
        key: Everything the baselines depend on (model hash, target fingerprint, calibration
            data hash), as one string.
    """
    root = Path(folder) / hashlib.sha256(key.encode()).hexdigest()[:24]

    def cached(name: str, build: Callable[[Path], Artifact]) -> Callable[[Path], Artifact]:
        def get(_workdir: Path) -> Artifact:
            done = root / _slug(name)
            if (done / "artifact.json").is_file():
                return Artifact.load_index(done)
            partial = done.with_name(done.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            try:
                build(partial).save_index(partial)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            shutil.rmtree(done, ignore_errors=True)
            partial.rename(done)
            return Artifact.load_index(done)

        return get

    return {name: cached(name, build) for name, build in builders.items()}
