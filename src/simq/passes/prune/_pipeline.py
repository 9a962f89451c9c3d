"""The pruning pipeline as data: its knobs, its passes, applying a config, predicting its size."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.ir import RemovableBlock, Structure, cleanup_passes
from simq.passes._knobs import Knob, check_config, depth_knob, ffn_knob, heads_knob, knob_kind
from simq.passes._run import run_passes
from simq.passes.prune._common import Order, WidthPass, dropped_layers
from simq.passes.prune._stats import PruningStats, observe
from simq.passes.prune.channels import PruneChannelsPass
from simq.passes.prune.depth import DropBlocksPass
from simq.passes.prune.ffn import PruneFFNPass
from simq.passes.prune.heads import PruneHeadsPass

__all__ = [
    "ELASTIC_METADATA",
    "PRUNING_PASSES",
    "PruneOptions",
    "TrainedSpace",
    "elastic_record",
    "predicted_params",
    "prune",
    "pruning_knobs",
    "pruning_options",
    "pruning_passes",
    "pruning_steps",
    "pruning_within",
]


@dataclass(frozen=True)
class PruneOptions:
    """How units are chosen and whether consumers are refit (see `Order`)."""

    order: Order = "importance"
    reconstruct: bool = False


#: ``metadata_props`` key of a model fine-tuned elastically (`simq tune`): its units are already
#: sorted by importance and trained as first-k slices, so it is pruned in ``first`` order without
#: refits. JSON: ``order``, ``original`` (the model before tuning, relative to the file), ...
ELASTIC_METADATA = "simq.elastic"


def elastic_record(model: ir.Model) -> dict[str, Any] | None:
    """What `simq tune` recorded on a model, or None for a model that was not tuned."""
    text = model.metadata_props.get(ELASTIC_METADATA)
    return json.loads(text) if text else None


@dataclass(frozen=True)
class TrainedSpace:
    """The sub-networks elastic fine-tuning trained; a search of a tuned model stays inside them.

    Attributes:
        min_width: Heads and FFN widths below this share of the full width were never trained.
        depth_order: Depth knobs in the order tuning drops blocks (least important first): the
            trained depths are "the first k of them dropped".
        max_drops: The largest k trained.
    """

    min_width: float
    depth_order: tuple[str, ...] = ()
    max_drops: int = 0

    @classmethod
    def of(cls, model: ir.Model) -> TrainedSpace | None:
        """The space `simq tune` recorded on `model` (None if it was not tuned)."""
        record = elastic_record(model)
        if record is None:
            return None
        order = tuple(record.get("depth_order", ()))
        return cls(float(record.get("min_width", 0.0)), order, int(record.get("max_drops", 0)))

    def knobs(self, knobs: list[Knob]) -> list[Knob]:
        """`knobs` limited to what was trained: widths from `min_width` up, depth knobs only for
        the blocks tuning drops (others are never dropped)."""
        droppable = set(self.depth_order[: self.max_drops])
        limited = []
        for knob in knobs:
            kind = knob_kind(knob.name)
            if kind == knob_kind(depth_knob(0)):
                if knob.name in droppable:
                    limited.append(knob)
            elif kind in (knob_kind(heads_knob(0)), knob_kind(ffn_knob(0))):
                floor = self.min_width * knob.default - 1e-9
                limited.append(replace(knob, domain=tuple(v for v in knob.domain if v >= floor)))
            else:
                limited.append(knob)
        return limited

    def repair(self, config: dict[str, Hashable]) -> dict[str, Hashable]:
        """`config` with its depth on a trained one: as many blocks dropped, the first in order."""
        order = [name for name in self.depth_order[: self.max_drops] if name in config]
        dropped = sum(bool(config[name]) for name in order)
        config.update({name: i < dropped for i, name in enumerate(order)})
        return config


def pruning_options(model: ir.Model, stats_available: bool) -> PruneOptions:
    """How to prune `model`: first-k without refits when it was tuned elastically, else by
    importance with least-squares refits where there are statistics."""
    if elastic_record(model) is not None:
        return PruneOptions(order="first", reconstruct=False)
    return PruneOptions(order="importance" if stats_available else "first", reconstruct=stats_available)


#: The pruning passes, in the order they run (widths first, then depth). A new kind of pruning is
#: its pass file (a `WidthPass` with its `knobs`, `narrowing` and `call`) and one entry here.
PRUNING_PASSES: tuple[type[ir.passes.InPlacePass], ...] = (PruneHeadsPass, PruneFFNPass, PruneChannelsPass, DropBlocksPass)


def pruning_knobs(structure: Structure) -> list[Knob]:
    """Every pruning knob of the model: heads, FFN widths, channel groups, depth."""
    return [knob for cls in PRUNING_PASSES for knob in cls.knobs(structure)]


def collect_stats(
    model: ir.Model,
    structure: Structure,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    grams: bool = True,
    on_batch: Callable[[], None] | None = None,
) -> PruningStats:
    """Run calibration batches through ONNX Runtime once; every pass of `PRUNING_PASSES` scores
    its units (`WidthPass.importance`), and the Gram matrices of tapped projections are kept.

    Args:
        model: The unpruned, cleaned-up model `structure` was computed on.
        batches: Input feeds; an ``attention_mask`` input, if present, drops padding tokens.
        grams: Also collect the Gram matrices (and cross products) that reconstruction needs.
        on_batch: Called after each batch (for progress bars).
    """
    importances = {}
    for cls in PRUNING_PASSES:
        importance = cls.importance(structure, model.graph) if issubclass(cls, WidthPass) else None
        if importance is not None:
            importances[cls.kind] = importance
    return observe(model, batches, importances, grams=grams, on_batch=on_batch)


def pruning_within(structure: Structure, block: RemovableBlock) -> list[str]:
    """The pruning knobs that mean nothing once `block` is dropped, as each pass says of its own."""
    return [name for cls in PRUNING_PASSES for name in cls.within(structure, block)]


def pruning_passes(
    structure: Structure, config: Mapping[str, Hashable], stats: PruningStats | None, options: PruneOptions
) -> list[ir.passes.PassBase]:
    """The passes that apply `config`, in `PRUNING_PASSES` order."""
    return [
        cls(structure, config, stats, order=options.order, reconstruct=options.reconstruct) if issubclass(cls, WidthPass) else cls(structure, config)
        for cls in PRUNING_PASSES
    ]


def _normalized(structure: Structure, config: Mapping[str, Hashable], knobs: list[Knob]) -> dict[str, Hashable]:
    """Check `config` and fill in defaults; zero heads is allowed only in a dropped layer."""
    config = dict(config)
    dropped = dropped_layers(structure, config)
    for layer in structure.layers:
        if config.get(heads_knob(layer.index)) == 0:
            if layer.index not in dropped:
                raise InvalidConfigError(
                    f"{heads_knob(layer.index)}=0 removes every head of layer {layer.index} but keeps the layer; "
                    "drop it with its depth knob or keep at least one head."
                )
            config[heads_knob(layer.index)] = layer.attention.num_heads
    return check_config(config, knobs)


class _ForgetShapesPass(ir.passes.InPlacePass):
    """Clears intermediate shapes, which pruning made stale, so inference recomputes them."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        outputs = set(map(id, model.graph.outputs))
        for node in model.graph:
            for value in node.outputs:
                if id(value) not in outputs:
                    value.shape = None
        return ir.passes.PassResult(model, True)


def pruning_steps(
    structure: Structure, config: Mapping[str, Hashable], stats: PruningStats | None = None, options: PruneOptions = PruneOptions()
) -> list[ir.passes.PassBase]:
    """The passes that prune a fresh copy of the model to `config` and clean it up (none when
    `config` prunes nothing), for a pass manager.

    Raises:
        InvalidConfigError: Unknown knob, value out of its domain, every head of a kept layer
            removed, or importance order / reconstruction asked for without statistics.
    """
    knobs = pruning_knobs(structure)
    config = _normalized(structure, config, knobs)
    changed = [k.name for k in knobs if config[k.name] != k.default]
    if not changed:
        return []
    if stats is None and (options.reconstruct or options.order == "importance") and any(knob_kind(n) != knob_kind(depth_knob(0)) for n in changed):
        raise InvalidConfigError("importance-ordered pruning and reconstruction need calibration statistics; pass stats= or use order='first'.")
    return [*pruning_passes(structure, config, stats, options), _ForgetShapesPass(), cleanup_passes()]


def prune(
    model: ir.Model,
    structure: Structure,
    config: Mapping[str, Hashable],
    stats: PruningStats | None = None,
    options: PruneOptions = PruneOptions(),
) -> ir.Model:
    """Apply a pruning config to `model` in place and clean it up (`pruning_steps`).

    Args:
        model: A fresh copy of the model `structure` was computed on.
        config: Knob values; knobs it leaves out keep their default (no pruning).
    """
    return run_passes(pruning_steps(structure, config, stats, options), model)


def predicted_params(structure: Structure, config: Mapping[str, Hashable]) -> int:
    """Parameters the pruned model will have, from the analysis alone (no graph is built): every
    parameter tensor shrinks by what each pruning pass's `narrowing` keeps of it."""
    config = _normalized(structure, config, pruning_knobs(structure))
    factor = {name: 1.0 for name in structure.weights}
    for cls in PRUNING_PASSES:
        for cut in cls.narrowing(structure, config):
            if cut.tensor in factor:
                factor[cut.tensor] *= cut.kept / cut.total
    return round(sum(structure.weights[name] * f for name, f in factor.items()))
