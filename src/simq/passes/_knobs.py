"""Knobs: the searchable parameters a pass declares, and checking a config against them."""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from simq.errors import InvalidConfigError

__all__ = [
    "Config",
    "Knob",
    "channels_knob",
    "check_config",
    "defaults",
    "depth_knob",
    "ffn_knob",
    "heads_knob",
    "is_precision",
    "knob_kind",
    "quant_knob",
]

# The knob name scheme: ``<kind>.<index or unit>``. Only these helpers spell it.
_HEADS, _FFN, _CHANNELS, _DEPTH, _QUANT = "heads", "ffn", "channels", "depth", "quant"


def heads_knob(layer: int) -> str:
    """Attention heads kept in transformer layer `layer`."""
    return f"{_HEADS}.{layer}"


def ffn_knob(layer: int) -> str:
    """FFN neurons kept in transformer layer `layer`."""
    return f"{_FFN}.{layer}"


def channels_knob(group: int) -> str:
    """Channels kept in coupled channel group `group`."""
    return f"{_CHANNELS}.{group}"


def depth_knob(block: int) -> str:
    """Whether removable block `block` is dropped."""
    return f"{_DEPTH}.{block}"


def quant_knob(unit: str) -> str:
    """The precision of quantization unit `unit` (a node name or ``attention.<layer>``)."""
    return f"{_QUANT}.{unit}"


def knob_kind(name: str) -> str:
    """``heads``, ``ffn``, ``channels``, ``depth``, ``quant``, or the name itself (``precision``)."""
    return name.split(".", 1)[0]


def is_precision(name: str) -> bool:
    """A per-unit precision knob."""
    return knob_kind(name) == _QUANT and "." in name

#: A candidate: knob name -> value, JSON-serialisable and stored as-is.
Config = Mapping[str, Hashable]


@dataclass(frozen=True)
class Knob:
    """One searchable parameter of a pass.

    Attributes:
        name: Unique across the pipeline, e.g. ``"ffn.3"`` (layer 3's FFN width).
        domain: The finite set of values, in a meaningful order (small to large).
        default: The identity value: no compression. Always in `domain`.
        help: What the knob controls, for reports and error messages.
    """

    name: str
    domain: tuple[Hashable, ...]
    default: Hashable
    help: str = ""

    def __post_init__(self) -> None:
        if self.default not in self.domain:
            raise ValueError(f"knob {self.name}: default {self.default!r} not in its domain")


def defaults(knobs: Iterable[Knob]) -> dict[str, Hashable]:
    """The all-defaults config, which leaves the model unchanged."""
    return {k.name: k.default for k in knobs}


def check_config(config: Config, knobs: Sequence[Knob]) -> dict[str, Hashable]:
    """Validate `config` against `knobs` and fill in defaults for knobs it leaves out.

    Raises:
        InvalidConfigError: A knob is unknown or a value is outside its domain.
    """
    by_name = {k.name: k for k in knobs}
    for name, value in config.items():
        knob = by_name.get(name)
        if knob is None:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; this pipeline's knobs are {', '.join(list(by_name)[:8])}{', ...' if len(by_name) > 8 else ''}."
            raise InvalidConfigError(f"unknown knob {name!r}{hint}")
        if value not in knob.domain:
            raise InvalidConfigError(f"knob {name!r} cannot be {value!r}; it takes one of {list(knob.domain)}.")
    return {**defaults(knobs), **config}
