"""Fusion into a runtime's fused kernels, run after pruning and before quantization (and one
rewrite run after it: `ResidualBiasIntoMatMulPass`)."""

from simq.passes.fuse.attention_bias import AttentionMaskIndex, AttentionZeroBias, attention_bias_rules
from simq.passes.fuse.mha_form import KeyTransposeChain, MhaFormPass, SoftmaxNanGuard, ZeroScoreBias, mha_form_rules
from simq.passes.fuse.ort_fusion import FUSION_METADATA, OrtFusionPass, fusion_record
from simq.passes.fuse.residual_bias import ResidualBiasIntoMatMul, ResidualBiasIntoMatMulPass, residual_bias_rules
from simq.passes.fuse.skip_layer_norm_as_sum import (
    SkipLayerNormAsSum,
    SkipLayerNormAsSumPass,
    skip_layer_norm_as_sum_rules,
)

__all__ = [
    "FUSION_METADATA", "AttentionMaskIndex", "AttentionZeroBias", "KeyTransposeChain", "MhaFormPass", "OrtFusionPass", "ResidualBiasIntoMatMul", "ResidualBiasIntoMatMulPass",
    "SkipLayerNormAsSum", "SkipLayerNormAsSumPass", "SoftmaxNanGuard", "ZeroScoreBias", "attention_bias_rules", "fusion_record", "mha_form_rules",
    "residual_bias_rules",
    "skip_layer_norm_as_sum_rules",
]  # fmt: skip
