"""The SimQ IR: ONNX models held as `onnx_ir.Model`, their loading, cleanup and analysis."""

from simq.ir._analysis import META_COST, META_KEPT, META_ROLE, META_SHAPE, analyze
from simq.ir._cache import cache_root
from simq.ir._cleanup import FoldConstantsPass, cleanup, cleanup_passes
from simq.ir._frontends import SEQUENCE_LIMIT, export_torch, load_transformers_dir, text_inputs
from simq.ir._inputs import InputDomain, input_domains, sequence_limit
from simq.ir._io import ModelSource, load, model_digest, resolve_source, save
from simq.ir._quiet import ROOT_LOGGER, quiet
from simq.ir._refs import TUNE_RECORD, ZOO_PREFIX, tuned_source, zoo_model_of, zoo_name
from simq.ir._shapes import DEFAULT_DIM, concrete_shapes, resolve_signature, restore_symbolic_shapes
from simq.ir._structure import (
    AttentionBlock,
    ChannelGroup,
    ChannelUse,
    FFNBlock,
    Linear,
    NodeCost,
    QuantizableNode,
    RemovableBlock,
    Structure,
    TransformerLayer,
)
from simq.ir._torch import TOOLS_OPSET, ToolsExport, TorchSource, transformers_source

__all__ = [
    "ROOT_LOGGER",
    "DEFAULT_DIM",
    "TOOLS_OPSET",
    "TUNE_RECORD",
    "ZOO_PREFIX",
    "META_COST",
    "META_KEPT",
    "META_ROLE",
    "META_SHAPE",
    "SEQUENCE_LIMIT",
    "AttentionBlock",
    "ChannelGroup",
    "ChannelUse",
    "FFNBlock",
    "FoldConstantsPass",
    "InputDomain",
    "Linear",
    "ModelSource",
    "NodeCost",
    "QuantizableNode",
    "RemovableBlock",
    "Structure",
    "ToolsExport",
    "TorchSource",
    "TransformerLayer",
    "analyze",
    "cache_root",
    "cleanup",
    "cleanup_passes",
    "concrete_shapes",
    "export_torch",
    "input_domains",
    "load",
    "model_digest",
    "load_transformers_dir",
    "resolve_signature",
    "resolve_source",
    "restore_symbolic_shapes",
    "quiet",
    "save",
    "sequence_limit",
    "text_inputs",
    "transformers_source",
    "tuned_source",
    "zoo_model_of",
    "zoo_name",
]
