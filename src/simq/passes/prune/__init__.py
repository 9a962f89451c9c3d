"""Elastic structured pruning: attention heads, FFN width, depth and CNN channels.

Each pass reads its knobs from one config and is an `onnx_ir` pass; `prune` validates a
config, runs them in order (widths before depth) and cleans up. Each pass scores its
own units (`WidthPass.importance`); `collect_stats` runs every pass's taps once per model and
keeps the Gram matrices for least-squares reconstruction. A pruned classifier's head can be refit
on its own features of labelled rows (`SetHeadPass`).
"""

from simq.passes.prune._common import Narrowing, WidthPass, in_parts
from simq.passes.prune._pipeline import (
    ELASTIC_METADATA,
    PRUNING_PASSES,
    PruneOptions,
    TrainedSpace,
    collect_stats,
    elastic_record,
    predicted_params,
    prune,
    pruning_knobs,
    pruning_options,
    pruning_passes,
    pruning_steps,
    pruning_within,
)
from simq.passes.prune._stats import Importance, PruningStats, Seen, Tap
from simq.passes.prune.channels import PruneChannelsPass
from simq.passes.prune.depth import DropBlocksPass
from simq.passes.prune.head import Head, HeadRows, SetHeadPass, find_head, fit_head
from simq.passes.prune.ffn import PruneFFNPass
from simq.passes.prune.heads import PruneHeadsPass

__all__ = [
    "ELASTIC_METADATA",
    "PRUNING_PASSES",
    "DropBlocksPass",
    "Head",
    "HeadRows",
    "Importance",
    "Narrowing",
    "PruneChannelsPass",
    "PruneFFNPass",
    "PruneHeadsPass",
    "PruneOptions",
    "PruningStats",
    "SetHeadPass",
    "Seen",
    "Tap",
    "TrainedSpace",
    "WidthPass",
    "collect_stats",
    "elastic_record",
    "find_head",
    "fit_head",
    "in_parts",
    "predicted_params",
    "prune",
    "pruning_knobs",
    "pruning_options",
    "pruning_passes",
    "pruning_steps",
    "pruning_within",
]
