"""Activation ranges, collected once on the FP32 model through ONNX Runtime.

Ranges are kept per channel, so the range of a tensor that pruning narrowed can be derived
from the channels it kept, without calibrating the sub-network again. Per tensor, min/max or a
percentile range, whichever quantizes the calibration values with less error.
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

__all__ = ["PERCENTILES", "Calibration", "TensorRange", "calibrate", "calibrate_values"]


#: Two-sided percentiles tried against min/max for each tensor's INT8 range.
PERCENTILES = (99.9, 99.99, 99.999)
# Histogram bins per tensor over its min..max (the error of a range is read off the histogram).
_BINS = 2048
_MIN_RANGE = 1e-8  # narrower ranges quantize at this one (the scale's floor): nothing to clip


@dataclass(frozen=True)
class TensorRange:
    """Per-channel minimum and maximum of one activation, channels on its last axis.

    Attributes:
        clip: A narrower per-tensor range, when a percentile of the calibration values
            quantized them with less error than min/max (a few outliers otherwise stretch the
            INT8 grid over values that almost never occur); None keeps min/max.
    """

    low: np.ndarray
    high: np.ndarray
    clip: tuple[float, float] | None = None

    def bounds(self, kept: Sequence[int] | None = None) -> tuple[float, float]:
        """The per-tensor range, over the `kept` channels only if given; always contains 0.

        A range recorded on the narrowed activation itself (as many channels as were kept, as
        after re-calibrating a pruned model) is used whole.
        """
        narrow = kept is not None and len(kept) != len(self.low)
        low, high = (self.low[kept], self.high[kept]) if narrow else (self.low, self.high)
        low_, high_ = min(float(low.min()), 0.0), max(float(high.max()), 0.0)
        if self.clip is not None:
            low_, high_ = max(low_, self.clip[0]), min(high_, self.clip[1])
        return low_, high_


def _uint8_error(centers: np.ndarray, counts: np.ndarray, low: float, high: float) -> float:
    """Mean squared error of values (histogram bins) quantized to uint8 over [low, high] and back."""
    scale = max(high - low, _MIN_RANGE) / 255.0
    zero_point = np.clip(np.round(-low / scale), 0, 255)
    q = np.clip(np.round(centers / scale) + zero_point, 0, 255)
    return float(np.sum(counts * ((q - zero_point) * scale - centers) ** 2) / max(counts.sum(), 1))


def _best_clip(counts: np.ndarray, edges: np.ndarray, low: float, high: float) -> tuple[float, float] | None:
    """The percentile range that quantizes the histogrammed values with less error than min/max.

    Clipping wins only where the tail is sparse enough: for INT8 over N values, fewer than
    about one value in 10^5 to 10^6 beyond the percentile.
    """
    centers = (edges[:-1] + edges[1:]) / 2
    cdf = np.cumsum(counts) / max(counts.sum(), 1)
    best, best_error = None, _uint8_error(centers, counts, low, high)
    for p in PERCENTILES:
        lo = min(float(edges[np.searchsorted(cdf, (100 - p) / 100)]), 0.0)
        hi = max(float(edges[min(np.searchsorted(cdf, p / 100) + 1, len(edges) - 1)]), 0.0)
        error = _uint8_error(centers, counts, lo, hi)
        if error < best_error:
            best, best_error = (lo, hi), error
    return best


@dataclass(frozen=True)
class Calibration:
    """Ranges of the activations that quantizable nodes read, by value name."""

    ranges: Mapping[str, TensorRange]

    def save(self, path: Path) -> None:
        arrays = {f"{k}/low": r.low for k, r in self.ranges.items()} | {
            f"{k}/high": r.high for k, r in self.ranges.items()
        }
        arrays |= {f"{k}/clip": np.array(r.clip) for k, r in self.ranges.items() if r.clip is not None}
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        with np.load(path) as data:
            names = {key.rsplit("/", 1)[0] for key in data.files}
            return cls({
                n: TensorRange(data[f"{n}/low"], data[f"{n}/high"], tuple(data[f"{n}/clip"].tolist()) if f"{n}/clip" in data.files else None)
                for n in names
            })  # fmt: skip


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
    """Per-channel ranges of the activations named `names` over the calibration batches, each
    with the percentile clip (`PERCENTILES`) that quantizes it best, where one beats min/max.

    Two passes over the batches: ranges first, then a histogram of every value over its range,
    from which each candidate range's INT8 error is read.
    """
    batches = list(batches)
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
    bounds = {n: TensorRange(low[n], high[n]).bounds() for n in names if n in low}
    bounds = {n: b for n, b in bounds.items() if b[1] - b[0] >= _MIN_RANGE}  # (near-)constant ones: no clip
    counts = {n: np.zeros(_BINS) for n in bounds}
    for _, taps in tapped_runs(model, list(bounds), batches) if bounds else ():
        for name, x in taps.items():
            counts[name] += np.histogram(np.asarray(x, dtype=np.float32), bins=_BINS, range=bounds[name])[0]
    return Calibration({
        n: TensorRange(low[n], high[n], _best_clip(counts[n], np.linspace(*bounds[n], _BINS + 1), *bounds[n]) if n in bounds else None)
        for n in low
    })  # fmt: skip
