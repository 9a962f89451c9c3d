"""OrtFusionPass: fuse what ONNX Runtime's CPU provider has kernels for."""

from __future__ import annotations

import json
from collections.abc import Mapping

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter.ort_fusions import optimize_for_ort

from simq.errors import first_line
from simq.ir import FoldConstantsPass, quiet, restore_symbolic_shapes
from simq.passes._contracts import require_unquantized
from simq.passes.fuse.attention_bias import attention_bias_rules

__all__ = ["FUSION_METADATA", "OrtFusionPass", "fusion_record"]

#: ``metadata_props`` key where a lowered model records how its fusion went (JSON).
FUSION_METADATA = "simq.fusion"


class OrtFusionPass(ir.passes.FunctionalPass):
    """Rewrites a model into ONNX Runtime's fused transformer kernels.

    onnxscript's ``optimize_for_ort`` rules fuse attention (``Attention``), residual layer norms
    (``SkipLayerNormalization``), bias + GELU (``BiasGelu``) and the rest its rule sets cover;
    `AttentionMaskIndex` then hands each attention its padding mask as ``mask_index``, and
    `AttentionZeroBias` drops a bias that is zero whatever the inputs: the form ONNX Runtime
    quantizes into QAttention. Before fusing, shapes are restored with symbolic axes
    (`simq.ir.restore_symbolic_shapes`): the rules check head and hidden sizes, which inference
    alone loses on pruned sub-networks.

    Changes: returns a new model; the input is left as it was. If fusing raises, the new model
    is an unfused copy. Either way ``metadata_props[FUSION_METADATA]`` records the outcome:
    ``{"status": "fused" | "unfused", "reason": ...}``.

    Args:
        signature: Concrete input shapes (the sizes symbolic axes take while shapes are restored).
        attention_bias: Whether to run the attention bias rules (off: the attentions as
            onnxscript fuses them, which tools/bench_attention_bias.py times against).
    """

    def __init__(self, signature: Mapping[str, tuple[int, ...]], *, attention_bias: bool = True) -> None:
        super().__init__()
        self.signature = dict(signature)
        self.attention_bias = attention_bias

    def requires(self, model: ir.Model) -> None:
        """Float: the fusion rules match float subgraphs, and quantization needs the fused ones."""
        require_unquantized(model, "OrtFusionPass")

    def ensures(self, model: ir.Model) -> None:
        if fusion_record(model) is None:
            raise ir.passes.PostconditionError("OrtFusionPass did not record how its fusion went.")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        fused = model.clone()
        try:
            restore_symbolic_shapes(fused, self.signature)
            with quiet("onnxscript"):
                fused, _ = optimize_for_ort(fused)
                if self.attention_bias:
                    attention_bias_rules().apply_to_model(fused)
            # The attention rule concatenates the Q, K and V weights; folded, the kernel reads one
            # weight tensor, which is what quantizing it needs.
            FoldConstantsPass()(fused)
            common.CommonSubexpressionEliminationPass()(fused)
            common.RemoveUnusedNodesPass()(fused)
            record = {"status": "fused"}
        except Exception as e:  # a rule that breaks on an unusual graph must not lose the candidate
            fused = model.clone()
            record = {"status": "unfused", "reason": first_line(e, typed=True)}
        fused.metadata_props[FUSION_METADATA] = json.dumps(record)
        return ir.passes.PassResult(fused, True)


def fusion_record(model: ir.Model) -> dict[str, str] | None:
    """What `OrtFusionPass` recorded on `model`, or None if it never ran on it."""
    text = model.metadata_props.get(FUSION_METADATA)
    return json.loads(text) if text else None
