"""Pruning, the target's fusions, then quantization as one pipeline: its search space, repairing a
config, building a candidate."""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import Structure, cleanup_passes
from simq.passes._knobs import Knob, channels_knob, check_config, depth_knob, ffn_knob, heads_knob, is_precision
from simq.passes._run import run_passes
from simq.passes.prune import (
    PruneOptions,
    PruningStats,
    TrainedSpace,
    pruning_knobs,
    pruning_options,
    pruning_steps,
    pruning_within,
)
from simq.passes.prune.head import Head, HeadRows, SetHeadPass, features_of, find_head, fit_head
from simq.passes.quant import (
    FALLBACK,
    INFERENCE_PRECISION,
    INT4_BLOCK,
    Calibration,
    InferencePrecisionPass,
    QuantizePass,
    calibrate_values,
    fused_attention,
    quant_knob,
    takes_int8dyn,
)
from simq.passes.quant.quantize import Supports

__all__ = ["Lowering", "Pipeline"]


@dataclass(frozen=True)
class Lowering:
    """What a target does to every candidate between pruning and quantization.

    Attributes:
        fusions: Passes that rewrite the model into the runtime's fused kernels, in order
            (e.g. `simq.passes.fuse.OrtFusionPass`); none for a runtime that fuses by itself.
        reduce_range: int8dyn weights in 7 bits, on CPUs whose INT8 dot product can saturate.
        signed_operands: Static-INT8 MatMuls of two activations (attention's scores and context)
            read their signed operands as symmetric int8, for a runtime whose INT8 MatMul takes
            no zero point there (OpenVINO's CPU plugin runs them in FP32 otherwise).
        seed_precision: The precision the search's width and depth seeds use
            (`simq.search.SearchSpace.anchors`), for a target that measured which pays on this
            CPU; None for the first compressed precision the knobs offer.
        notes: Kernel choices the target made for this CPU, in words, by the index of the fusion
            pass that makes them (reports show those whose pass changed the model).
        choices: Choices the target made for this CPU that apply to every model, in words.
        finishing: Passes run on the quantized model (after its cleanup), in order: how the
            runtime wants the neighbours of its quantized kernels written (e.g.
            `simq.passes.fuse.ResidualBiasIntoMatMulPass`). Run with the fusions only.
    """

    fusions: tuple[ir.passes.PassBase, ...] = ()
    reduce_range: bool = False
    signed_operands: bool = False
    seed_precision: str | None = None
    notes: Mapping[int, str] = field(default_factory=dict)
    choices: tuple[str, ...] = ()
    finishing: tuple[ir.passes.PassBase, ...] = ()


@dataclass(frozen=True)
class _InputWidth:
    """How a projection's input width follows a pruning knob: `knob` value x `per_unit` features."""

    knob: str
    per_unit: int


class Pipeline:
    """Elastic pruning, the target's fusions, then per-unit quantization, for one model and target.

    Its knobs are the concatenation of the passes' knobs: nothing else defines the search space.
    Everything that does not depend on the candidate (the analysis, pruning statistics,
    calibration ranges, which attentions the target fuses) is computed once; `build` then
    applies one config in about a second.

    Args:
        model: The FP32 model; never modified (`build` works on a clone).
        structure: Its analysis.
        calibration: Activation ranges; without them no quantization knobs are offered.
        calibration_batches: The inputs `calibration` was computed on. With them, a pruned or
            fused candidate is re-calibrated before static INT8: pruning and the least-squares
            refits move the activations downstream, and the FP32 model's ranges then misplace
            the INT8 grid (minilm-tweets, FFN halved then INT8: 74.8 % with the FP32 ranges,
            77.7 % re-calibrated, 78.7 % unquantized; validation split); fusion renames them.
        stats: Pruning statistics (importance, Grams); without them units are kept first-k.
        supports: The target's ``supports(op_type, precision)``, which filters the precisions.
        lowering: The target's fusions and quantization details (`Lowering`).
        prune_options: Unit order and least-squares reconstruction (default: `pruning_options`:
            first-k without refits for a model tuned elastically).
        head_rows: Labelled training rows. With them and reconstruction, a pruned candidate's
            linear classifier head is refit on its own features of these rows (`build`).
        trained: For a model tuned elastically, the sub-networks tuning trained: the pruning
            knobs offer only those (`TrainedSpace`); None searches every width and depth.
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
        lowering: Lowering | None = None,
        prune_options: PruneOptions | None = None,
        trained: TrainedSpace | None = None,
        head_rows: HeadRows | None = None,
        prune: bool = True,
        quantize: bool = True,
    ) -> None:
        self._arguments = dict(
            calibration=calibration, calibration_batches=calibration_batches, stats=stats, supports=supports, lowering=lowering,
            prune_options=prune_options, trained=trained, head_rows=head_rows, prune=prune, quantize=quantize,
        )  # fmt: skip
        self.model, self.structure = model, structure
        self.calibration, self.stats, self.supports = calibration, stats, supports
        self.calibration_batches = calibration_batches
        self.lowering = lowering or Lowering()
        self.prune_options = prune_options or pruning_options(model, stats is not None)
        self.head_rows = head_rows
        #: The classifier head a pruned candidate refits, when there are rows and refits.
        self.head = find_head(model) if prune and head_rows is not None and self.prune_options.reconstruct else None
        self._classes = _classes(model, self.head) if self.head is not None else 0
        quantizing = quantize and calibration is not None
        self._lowered: ir.Model | None = None  # the FP32 model after the fusions, built once
        self._changed: set[int] = set()  # which fusions changed it
        self._lowered_calibration: Calibration | None = None
        #: Layers whose attention the target fuses, and whether the fused kernel takes int8dyn.
        self.fused: dict[int, bool] = (
            {layer: takes_int8dyn(node) for layer, node in fused_attention(self._lowered_model(), structure).items()}
            if quantizing and self.lowering.fusions else {}
        )  # fmt: skip
        self.trained = trained
        pruning = pruning_knobs(structure) if prune else []
        self.knobs: list[Knob] = (
            (trained.knobs(pruning) if trained is not None else pruning)
            + (QuantizePass.knobs(structure, supports, self.fused) if quantizing else [])
            + (InferencePrecisionPass.knobs(supports) if quantize else [])
        )
        self._by_name = {k.name: k for k in self.knobs}
        self._moot = self._moot_knobs()
        self._input_width = self._input_widths()

    def replace(self, **changes: Any) -> Pipeline:
        """A new pipeline on the same model and structure with the arguments `changes` names
        changed and the others as given to this one: ``pipeline.replace(head_rows=None)`` builds
        the same candidates without the head refit."""
        unknown = set(changes) - set(self._arguments)
        if unknown:
            raise TypeError(f"Pipeline.replace: no argument {', '.join(sorted(unknown))}")
        return Pipeline(self.model, self.structure, **{**self._arguments, **changes})

    def repair(self, config: Mapping[str, Hashable]) -> dict[str, Hashable]:
        """The canonical form of `config`: every knob set, moot knobs at their default.

        Knobs of a dropped block (its widths, the precision of its units) are moot and reset,
        so that equal models have equal configs; an INT4 weight whose input width pruning made
        no multiple of the INT4 block falls back to INT8.

        Raises:
            InvalidConfigError: An unknown knob or a value outside its domain.
        """
        config = check_config(config, self.knobs)
        if self.trained is not None:
            config = self.trained.repair(config)
        config.update({name: self._by_name[name].default for name in self.moot(config)})
        for name, width in self._input_width.items():
            if config.get(name) == "int4w" and (config[width.knob] * width.per_unit) % INT4_BLOCK:
                domain = self._by_name[name].domain
                config[name] = next(p for p in FALLBACK["int4w"][1:] if p in domain)
        return config

    def moot(self, config: Mapping[str, Hashable]) -> set[str]:
        """The knobs that mean nothing under `config`: those of the blocks it drops (their
        widths, the precisions of their units), which `repair` resets to their defaults."""
        return {name for block_knob, names in self._moot.items() if config.get(block_knob) for name in names}

    def build(self, config: Mapping[str, Hashable], *, lower: bool = True) -> ir.Model:
        """A new model with `config` applied: pruned, fused for the target, quantized, cleaned up
        (`steps`, run as one pass manager on a copy).

        A pruned candidate with a `head` to refit is built twice: once to read its head's
        features on `head_rows` as it computes them (fused and quantized), then with the head
        fit to them set before the fusions (`SetHeadPass`).

        Args:
            lower: Run the target's fusions. Without them the model stays in standard ONNX
                (a fused attention unit's precision then applies to its Q, K and V projections):
                what the cost model reads, since ONNX shape inference cannot see through fused
                kernels; nor is the head refit, which changes no shape.
        """
        config = self.repair(config)
        start, steps = self.steps(config, lower=lower)
        model = run_passes(steps, start.clone())
        head = self._refit_head(model) if lower and self.head is not None and self._pruned(config) else None
        if head is None:
            return model
        start, steps = self.steps(config, lower=lower, head=head)
        return run_passes(steps, start.clone())

    def _pruned(self, config: Mapping[str, Hashable]) -> bool:
        return any(config[k.name] != k.default for k in self.knobs if not is_precision(k.name) and k.name != INFERENCE_PRECISION)

    def _refit_head(self, built: ir.Model) -> SetHeadPass | None:
        """The head refit on `built`'s own features of `head_rows`; None when it has none to read
        or too few rows of a class."""
        assert self.head is not None and self.head_rows is not None
        features = features_of(built, self.head, self.head_rows)
        if features is None:
            return None
        fit = fit_head(features, self.head_rows.labels, self._classes, bias=self.head.bias is not None)
        return SetHeadPass(*fit) if fit is not None else None

    def steps(
        self, config: Mapping[str, Hashable], *, lower: bool = True, head: SetHeadPass | None = None
    ) -> tuple[ir.Model, list[ir.passes.PassBase]]:
        """The model a canonical `config` starts from and the passes that make it, in order:
        pruning (with its cleanup), a refit head, the target's fusions, quantization (with its
        cleanup and the target's finishing passes), the inference precision. Each pass states
        what it requires of the model it receives and ensures of the one it leaves (onnx_ir's
        `requires`/`ensures`), so a step out of order fails naming itself. An unpruned candidate
        starts from the fused model, made once."""
        widths = {k: v for k, v in config.items() if not is_precision(k) and k != INFERENCE_PRECISION}
        pruning = pruning_steps(self.structure, widths, self.stats, self.prune_options)
        lower = lower and bool(self.lowering.fusions)
        start = self._lowered_model() if lower and not pruning else self.model
        steps = [*pruning, *([head] if head is not None and pruning else []), *(self.lowering.fusions if lower and pruning else ())]
        policy = {k: v for k, v in config.items() if is_precision(k) and v != "fp32"}
        if policy:
            if self.calibration is None:
                raise InvalidConfigError("quantization knobs need calibration ranges; give the pipeline a calibration.")
            recalibrate = functools.partial(self._calibration_for, pruned=bool(pruning), lowered=lower)
            quantizer = QuantizePass(
                self.structure, policy, self.calibration, self.supports, fused=self.fused, reduce_range=self.lowering.reduce_range,
                signed_operands=self.lowering.signed_operands, recalibrate=recalibrate,
            )  # fmt: skip
            steps += [quantizer, cleanup_passes(), *(self.lowering.finishing if lower else ())]
        if config.get(INFERENCE_PRECISION, "fp32") != "fp32":
            steps.append(InferencePrecisionPass(str(config[INFERENCE_PRECISION])))
        return start, steps

    def _lower(self, model: ir.Model, changed: set[int] | None = None) -> ir.Model:
        for index, fusion in enumerate(self.lowering.fusions):
            result = fusion(model)
            model = result.model
            if changed is not None and result.modified:
                changed.add(index)
        return model

    @property
    def notes(self) -> tuple[str, ...]:
        """The target's kernel choices that apply to this model (their pass changed it)."""
        if not self.lowering.fusions:
            return self.lowering.choices
        self._lowered_model()
        return (*self.lowering.choices, *(note for index, note in sorted(self.lowering.notes.items()) if index in self._changed))

    def _lowered_model(self) -> ir.Model:
        if self._lowered is None:
            self._lowered = self._lower(self.model.clone(), self._changed)
        return self._lowered

    def _calibration_for(self, model: ir.Model, names: list[str], *, pruned: bool, lowered: bool) -> Calibration:
        """Ranges for the activations `names` quantization reads in `model`: the FP32 model's when
        the candidate has the same activations, else measured on the candidate itself."""
        if not names or (not pruned and not lowered) or self.calibration_batches is None:
            return self.calibration
        if pruned:
            return calibrate_values(model, names, self.calibration_batches)
        if self._lowered_calibration is None:  # every unpruned candidate is the same fused graph
            everything = QuantizePass(
                self.structure, {k.name: "int8" for k in self.knobs if "int8" in k.domain}, self.calibration, self.supports, fused=self.fused
            )  # fmt: skip
            lowered = self._lowered_model()
            self._lowered_calibration = calibrate_values(lowered, everything.activations(lowered), self.calibration_batches)
        return self._lowered_calibration

    def _moot_knobs(self) -> dict[str, list[str]]:
        """For each depth knob: the other knobs that mean nothing once its block is dropped, as
        each pass says of its own (`within`)."""
        moot: dict[str, list[str]] = {}
        for block in self.structure.removable_blocks:
            knob = depth_knob(block.index)
            if knob in self._by_name:
                names = [*pruning_within(self.structure, block), *QuantizePass.within(self.structure, block)]
                moot[knob] = [n for n in dict.fromkeys(names) if n in self._by_name]
        return moot

    def _input_widths(self) -> dict[str, _InputWidth]:
        """The INT4-capable projections whose input width a pruning knob changes."""
        widths: dict[str, _InputWidth] = {}
        for layer in self.structure.layers:
            a, f = layer.attention, layer.ffn
            widths[quant_knob(a.out.node)] = _InputWidth(heads_knob(layer.index), a.out.in_features // a.num_heads)
            widths[quant_knob(f.down.node)] = _InputWidth(ffn_knob(layer.index), f.down.in_features // f.width)
        in_features = {quant_knob(q.node): q.in_features for q in self.structure.quantizable if q.in_features}
        for group in self.structure.channel_groups:
            for use in group.uses:
                name = quant_knob(use.node)
                if use.role == "consumer" and name in in_features:
                    widths[name] = _InputWidth(channels_knob(group.index), in_features[name] // group.size)
        return {
            name: width for name, width in widths.items()
            if name in self._by_name and "int4w" in self._by_name[name].domain and width.knob in self._by_name
        }  # fmt: skip


def _classes(model: ir.Model, head: Head) -> int:
    """How many logits `head` computes."""
    weight = next(n for n in model.graph if n.name == head.node).inputs[1]
    return int(weight.shape[0 if head.transposed else 1])
