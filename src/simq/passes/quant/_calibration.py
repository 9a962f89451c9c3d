"""Activation ranges, collected once on the FP32 model through ONNX Runtime.

Ranges are kept per channel, so the range of a tensor that pruning narrowed can be derived
from the channels it kept, without calibrating the sub-network again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from simq.ir import Structure
from simq.passes._taps import tapped_runs
from simq.passes.quant._regions import int8_activations

__all__ = ["Calibration", "TensorRange", "calibrate", "calibrate_values"]


@dataclass(frozen=True)
class TensorRange:
    """Per-channel minimum and maximum of one activation, channels on its last axis."""

    low: np.ndarray
    high: np.ndarray

    def bounds(self, kept: Sequence[int] | None = None) -> tuple[float, float]:
        """The per-tensor range, over the `kept` channels only if given; always contains 0.

        A range recorded on the narrowed activation itself (as many channels as were kept, as
        after re-calibrating a pruned model) is used whole.
        """
        narrow = kept is not None and len(kept) != len(self.low)
        low, high = (self.low[kept], self.high[kept]) if narrow else (self.low, self.high)
        return min(float(low.min()), 0.0), max(float(high.max()), 0.0)


@dataclass(frozen=True)
class Calibration:
    """Ranges of the activations that quantizable nodes read, by value name."""

    ranges: Mapping[str, TensorRange]

    def save(self, path: Path) -> None:
        arrays = {f"{k}/low": r.low for k, r in self.ranges.items()} | {
            f"{k}/high": r.high for k, r in self.ranges.items()
        }
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        with np.load(path) as data:
            names = {key.rsplit("/", 1)[0] for key in data.files}
            return cls({n: TensorRange(data[f"{n}/low"], data[f"{n}/high"]) for n in names})


def _channels_last(x: np.ndarray) -> np.ndarray:
    """(rows, channels): NCHW tensors put channels last; others keep their last axis."""
    if x.ndim == 4 and x.shape[1] != x.shape[-1]:
        return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
    return x.reshape(-1, x.shape[-1])


def calibrate(
    model: ir.Model,
    structure: Structure,
    batches: Iterable[Mapping[str, np.ndarray]],
    on_batch: Callable[[], None] | None = None,
) -> Calibration:
    """Run calibration batches once and record per-channel ranges of every activation static
    INT8 may quantize in `model` (the inputs of quantizable nodes and their INT8 regions)."""
    return calibrate_values(model, int8_activations(model, structure), batches, on_batch)


def calibrate_values(
    model: ir.Model,
    names: Sequence[str],
    batches: Iterable[Mapping[str, np.ndarray]],
    on_batch: Callable[[], None] | None = None,
) -> Calibration:
    """Per-channel ranges of the activations named `names`, over the calibration batches."""
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    for _, taps in tapped_runs(model, names, batches):
        for name, x in taps.items():
            rows = _channels_last(np.asarray(x, dtype=np.float32))
            lo, hi = rows.min(0), rows.max(0)
            low[name] = np.minimum(low[name], lo) if name in low else lo
            high[name] = np.maximum(high[name], hi) if name in high else hi
        if on_batch is not None:
            on_batch()
    return Calibration({n: TensorRange(low[n], high[n]) for n in names if n in low})
