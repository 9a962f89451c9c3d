"""Pruning then quantization as one pipeline: its search space, repairing a config, building a candidate."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import Structure
from simq.passes._knobs import Knob, check_config
from simq.passes.prune import PruneOptions, PruningStats, prune, pruning_knobs
from simq.passes.prune._common import depth_knob
from simq.passes.quant import INT4_BLOCK, Calibration, QuantizePass, calibrate, quant_knob, quantize
from simq.passes.quant.quantize import Supports

__all__ = ["Pipeline"]


@dataclass(frozen=True)
class _InputWidth:
    """How a projection's input width follows a pruning knob: `knob` value x `per_unit` features."""

    knob: str
    per_unit: int


class Pipeline:
    """Elastic pruning followed by per-node quantization, for one model and one target.

    Its knobs are the concatenation of the passes' knobs: nothing else defines the search space.
    Everything that does not depend on the candidate (the analysis, pruning statistics,
    calibration ranges) is given once; `build` then applies one config in about a second.

    Args:
        model: The FP32 model; never modified (`build` works on a clone).
        structure: Its analysis.
        calibration: Activation ranges; without them no quantization knobs are offered.
        calibration_batches: The inputs `calibration` was computed on. With them, a pruned
            candidate is re-calibrated before it is quantized: pruning and the least-squares
            refits move the activations downstream, and the FP32 model's ranges then misplace
            the INT8 grid (minilm-tweets, FFN halved then INT8: 74.8 % with the FP32 ranges,
            77.7 % re-calibrated, 78.7 % unquantized; validation split).
        stats: Pruning statistics (importance, Grams); without them units are kept first-k.
        supports: The target's ``supports(op_type, precision)``, which filters the precisions.
        prune_options: Unit order and least-squares reconstruction.
        prune, quantize: Which halves of the pipeline to search.
    """

    def __init__(
        self,
        model: ir.Model,
        structure: Structure,
        *,
        calibration: Calibration | None = None,
        calibration_batches: Sequence[Mapping[str, np.ndarray]] | None = None,
        stats: PruningStats | None = None,
        supports: Supports | None = None,
        prune_options: PruneOptions | None = None,
        prune: bool = True,
        quantize: bool = True,
    ) -> None:
        self.model, self.structure = model, structure
        self.calibration, self.stats, self.supports = calibration, stats, supports
        self.calibration_batches = calibration_batches
        self.prune_options = prune_options or PruneOptions(
            order="importance" if stats is not None else "first", reconstruct=stats is not None
        )
        pruning = pruning_knobs(structure) if prune else []
        quantizing = QuantizePass.knobs(structure, supports) if quantize and calibration is not None else []
        self.knobs: list[Knob] = pruning + quantizing
        self._by_name = {k.name: k for k in self.knobs}
        self._moot = self._moot_knobs()
        self._input_width = self._input_widths()

    def repair(self, config: Mapping[str, Hashable]) -> dict[str, Hashable]:
        """The canonical form of `config`: every knob set, moot knobs at their default.

        Knobs of a dropped block (its widths, the precision of its nodes) are moot and reset,
        so that equal models have equal configs; an INT4 weight whose input width pruning made
        no multiple of the INT4 block falls back to INT8.

        Raises:
            InvalidConfigError: An unknown knob or a value outside its domain.
        """
        config = check_config(config, self.knobs)
        for block_knob, moot in self._moot.items():
            if config.get(block_knob):
                config.update({name: self._by_name[name].default for name in moot})
        for name, width in self._input_width.items():
            if config.get(name) == "int4w" and (config[width.knob] * width.per_unit) % INT4_BLOCK:
                config[name] = "int8" if "int8" in self._by_name[name].domain else "fp32"
        return config

    def build(self, config: Mapping[str, Hashable]) -> ir.Model:
        """A new model with `config` applied: pruned, then quantized, cleaned up."""
        config = self.repair(config)
        model = prune(
            self.model.clone(), self.structure, {k: v for k, v in config.items() if not k.startswith("quant.")},
            self.stats, self.prune_options,
        )  # fmt: skip
        policy = {k: v for k, v in config.items() if k.startswith("quant.") and v != "fp32"}
        if not policy:
            return model
        if self.calibration is None:
            raise InvalidConfigError("quantization knobs need calibration ranges; give the pipeline a calibration.")
        calibration = self.calibration
        pruned = any(config[k.name] != k.default for k in self.knobs if not k.name.startswith("quant."))
        if pruned and self.calibration_batches is not None:
            present = {node.name for node in model.graph}
            surviving = dataclasses.replace(
                self.structure, quantizable=tuple(q for q in self.structure.quantizable if q.node in present)
            )
            calibration = calibrate(model, surviving, self.calibration_batches)
        return quantize(model, self.structure, policy, calibration, self.supports)

    def _moot_knobs(self) -> dict[str, list[str]]:
        """For each depth knob: the other knobs that mean nothing once its block is dropped."""
        moot: dict[str, list[str]] = {}
        for block in self.structure.removable_blocks:
            nodes = set(block.nodes)
            names = [quant_knob(n) for n in block.nodes]
            if block.layer is not None:
                names += [f"heads.{block.layer}", f"ffn.{block.layer}"]
            names += [f"channels.{g.index}" for g in self.structure.channel_groups if {u.node for u in g.uses} <= nodes]
            knob = depth_knob(block.index)
            if knob in self._by_name:
                moot[knob] = [n for n in names if n in self._by_name]
        return moot

    def _input_widths(self) -> dict[str, _InputWidth]:
        """The INT4-capable projections whose input width a pruning knob changes."""
        widths: dict[str, _InputWidth] = {}
        for layer in self.structure.layers:
            a, f = layer.attention, layer.ffn
            widths[quant_knob(a.out.node)] = _InputWidth(f"heads.{layer.index}", a.out.in_features // a.num_heads)
            widths[quant_knob(f.down.node)] = _InputWidth(f"ffn.{layer.index}", f.down.in_features // f.width)
        in_features = {quant_knob(q.node): q.in_features for q in self.structure.quantizable if q.in_features}
        for group in self.structure.channel_groups:
            for use in group.uses:
                name = quant_knob(use.node)
                if use.role == "consumer" and name in in_features:
                    widths[name] = _InputWidth(f"channels.{group.index}", in_features[name] // group.size)
        return {
            name: width for name, width in widths.items()
            if name in self._by_name and "int4w" in self._by_name[name].domain and width.knob in self._by_name
        }  # fmt: skip
