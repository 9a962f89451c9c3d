"""Finding targets by name: the built-ins, and plug-ins from the ``simq.targets`` entry points.

Nothing is registered at import time: a `TargetRegistry` is an ordinary object, entry points
are read when it is asked, and a target's module is imported only when that target is used.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from simq.errors import MissingDependencyError, UnknownTargetError
from simq.targets._api import Target

__all__ = ["ENTRY_POINT_GROUP", "TargetInfo", "TargetRegistry"]

#: The entry-point group third-party packages use to provide targets.
ENTRY_POINT_GROUP = "simq.targets"

_BUILT_IN = {
    "ort-cpu": "simq.targets.ort_cpu:OrtCpuTarget",
    "openvino-cpu": "simq.targets.openvino_cpu:OpenVinoCpuTarget",
}


@dataclass(frozen=True)
class TargetInfo:
    """Where a target comes from, before it is loaded."""

    name: str
    reference: str  # "module:attribute"
    provider: str  # "built-in" or the distribution that ships it


class TargetRegistry:
    """Targets by name. Entry points are re-read on each query, so a plug-in installed while a
    program runs is found."""

    def available(self) -> dict[str, TargetInfo]:
        found = {name: TargetInfo(name, ref, "built-in") for name, ref in _BUILT_IN.items()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in found:  # a plug-in cannot shadow a built-in
                provider = ep.dist.name if ep.dist is not None else "unknown package"
                found[ep.name] = TargetInfo(ep.name, ep.value, provider)
        return found

    def get(self, name: str, **options: Any) -> Target:
        """Instantiate the target `name` with `options` (e.g. ``threads=1``).

        Raises:
            UnknownTargetError: No target has that name.
            MissingDependencyError: The target's module (or its runtime) cannot be imported.
        """
        targets = self.available()
        info = targets.get(name)
        if info is None:
            close = difflib.get_close_matches(name, list(targets), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UnknownTargetError(f"unknown target {name!r}; {hint}available: {', '.join(sorted(targets))} (see simq targets).")
        module_name, _, attribute = info.reference.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except ImportError as e:
            raise MissingDependencyError(
                f"target {name!r} ({info.provider}) cannot be loaded: {e}; install what it needs."
            ) from e
        return factory(**options)
