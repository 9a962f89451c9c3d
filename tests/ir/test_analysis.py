from __future__ import annotations

import warnings

import onnx
import onnx_ir as ir
import pytest

import simq.ir as sir

CONV_MATMUL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 8, 8] x) => (float[N, 5] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
    r = Relu(c)
    p = GlobalAveragePool(r)
    f = Flatten(p)
    y = Gemm <transB = 1> (f, fc, fcb)
}
"""


def _conv_model() -> ir.Model:
    import numpy as np

    proto = onnx.parser.parse_model(CONV_MATMUL)
    rng = np.random.default_rng(0)
    for name, shape in (("w", (16, 3, 3, 3)), ("b", (16,)), ("fc", (5, 16)), ("fcb", (5,))):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    return sir.cleanup(ir.from_proto(proto))


def test_costs_and_channel_group_of_a_small_cnn():
    s = sir.analyze(_conv_model(), {"x": (2, 3, 8, 8)})
    conv = next(c for c in s.costs if c.op_type == "Conv")
    assert conv.macs == 2 * 16 * 8 * 8 * 3 * 3 * 3
    assert conv.params == 16 * 3 * 3 * 3 + 16
    gemm = next(c for c in s.costs if c.op_type == "Gemm")
    assert gemm.macs == 2 * 5 * 16
    assert s.params == 16 * 27 + 16 + 5 * 16 + 5
    assert s.macs == conv.macs + gemm.macs
    assert conv.activation_bytes == 4 * (2 * 3 * 8 * 8 + 2 * 16 * 8 * 8)
    prunable = [g for g in s.channel_groups if g.prunable]
    assert len(prunable) == 1 and prunable[0].size == 16
    assert prunable[0].consumers == (s.costs[-1].node,)  # the Gemm reads the 16 channels
    assert {q.op_type for q in s.quantizable} == {"Conv", "Gemm"}
    assert s.layers == () and s.removable_blocks == ()


def test_analysis_annotates_meta_and_serialises():
    model = _conv_model()
    s = sir.analyze(model, {"x": (1, 3, 8, 8)})
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.meta[sir.META_COST] == s.cost(conv.name)
    assert conv.outputs[0].meta[sir.META_SHAPE] == (1, 16, 8, 8)
    assert "channel group" in conv.meta[sir.META_ROLE]
    assert s.to_dict()["signature"] == {"x": [1, 3, 8, 8]}


def _check_transformer(s: sir.Structure, layers: int, heads: int, head_size: int, ffn: int) -> None:
    assert len(s.layers) == layers
    for layer in s.layers:
        assert (layer.attention.num_heads, layer.attention.head_size, layer.ffn.width) == (heads, head_size, ffn)
        assert len(layer.attention.head_reshapes) == 3
    assert [b.kind for b in s.removable_blocks] == ["transformer-layer"] * layers
    for a, b in zip(s.layers, s.layers[1:]):
        if a.stack == b.stack:
            assert a.output == b.input


def test_bert_tiny(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    s = sir.analyze(model, zoo.entry("bert-tiny").signature)
    _check_transformer(s, layers=2, heads=2, head_size=64, ffn=512)
    # Less the token-type table (2 x 128), folded into the position table when the model loads.
    assert s.params == zoo.info("bert-tiny")["params"] - 2 * 128
    assert sum(q.kind == "dynamic" for q in s.quantizable) == 4  # QK^T and PV per layer


def test_vit_tiny(zoo):
    s = sir.analyze(sir.load("zoo:vit-tiny", zoo=zoo), zoo.entry("vit-tiny").signature)
    _check_transformer(s, layers=2, heads=2, head_size=32, ffn=128)
    assert s.params == zoo.info("vit-tiny")["params"]
    # The patch embedding's channels are reshaped into tokens: not a prunable channel group.
    assert not any(g.prunable for g in s.channel_groups)


def test_clip_tiny_has_two_towers(zoo):
    s = sir.analyze(sir.load("zoo:clip-tiny", zoo=zoo), zoo.entry("clip-tiny").signature)
    _check_transformer(s, layers=4, heads=2, head_size=32, ffn=128)
    assert sorted({layer.stack for layer in s.layers}) == [0, 1]
    # CLIP's scalar logit_scale feeds neither embedding output, so the graph has one fewer.
    assert s.params == zoo.info("clip-tiny")["params"] - 1


def test_resnet_tiny_channel_groups_and_identity_blocks(zoo):
    s = sir.analyze(sir.load("zoo:resnet-tiny", zoo=zoo), zoo.entry("resnet-tiny").signature)
    assert s.layers == ()
    # Two stages of two basic blocks; the first block of stage 2 has a projection shortcut.
    assert [b.kind for b in s.removable_blocks] == ["residual"] * 3
    # The stem and stage 1's residual stream are one group, coupled through the identity Adds.
    stem = s.channel_groups[0]
    assert stem.prunable and len(stem.producers) == 3 and len(stem.consumers) == 4
    # The classifier's outputs are the graph output.
    assert not s.channel_groups[-1].prunable and "graph output" in s.channel_groups[-1].reason
    # The exporter folds each BatchNorm (2C parameters) into its Conv's bias (C parameters).
    transformers = pytest.importorskip("transformers")
    module = transformers.ResNetForImageClassification(transformers.ResNetConfig.from_dict(zoo.info("resnet-tiny")["config"]))
    folded = sum(m.num_features for m in module.modules() if type(m).__name__ == "BatchNorm2d")
    assert s.params == zoo.info("resnet-tiny")["params"] - folded


@pytest.mark.parametrize("family", ["Electra", "Albert"])
def test_the_first_layer_after_an_embedding_projection_is_a_layer(family, tmp_path):
    """ELECTRA and ALBERT project narrow embeddings to the hidden width: layer 0 reads that
    projection, not a layer norm, and is a transformer layer like the others."""
    transformers = pytest.importorskip("transformers")
    config = getattr(transformers, f"{family}Config")(
        vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, num_labels=2,
    )  # fmt: skip
    folder = tmp_path / family
    getattr(transformers, f"{family}ForSequenceClassification")(config).eval().save_pretrained(folder)
    model = sir.load(folder, cache_dir=tmp_path / "cache")
    s = sir.analyze(model, {d.name: (1, 16) for d in sir.input_domains(model)})
    _check_transformer(s, layers=3, heads=2, head_size=16, ffn=64)
    first = s.layers[0]
    assert first.attention.output == first.ffn.input  # one residual stream through the layer


def test_legacy_exporter_graph(tmp_path):
    """A graph from the TorchScript exporter (other names, Erf GELU, explicit head counts)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(
        dim=96, n_layers=3, n_heads=4, hidden_dim=192, vocab_size=500, activation="gelu", attn_implementation="eager"
    )
    model = transformers.DistilBertModel(config).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids, mask):
            return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(0, 500, (2, 12))
    axes = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper(), (ids, torch.ones_like(ids)), str(tmp_path / "m.onnx"), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["out"], dynamic_axes=axes,
        )  # fmt: skip
    s = sir.analyze(sir.load(tmp_path / "m.onnx"), {"input_ids": (1, 16), "attention_mask": (1, 16)})
    _check_transformer(s, layers=3, heads=4, head_size=24, ffn=192)
    assert s.params == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_bert_base_full_size(zoo):
    s = sir.analyze(sir.load("zoo:bert-base", zoo=zoo), zoo.entry("bert-base").signature)
    _check_transformer(s, layers=12, heads=12, head_size=64, ffn=3072)
    assert s.params == zoo.info("bert-base")["params"] - 2 * 768  # the token-type table, folded


@pytest.mark.slow
def test_vit_base_full_size(zoo):
    s = sir.analyze(sir.load("zoo:vit-base", zoo=zoo), zoo.entry("vit-base").signature)
    _check_transformer(s, layers=12, heads=12, head_size=64, ffn=3072)
    assert s.params == zoo.info("vit-base")["params"]


@pytest.mark.slow
def test_resnet50_full_size(zoo):
    s = sir.analyze(sir.load("zoo:resnet50", zoo=zoo), zoo.entry("resnet50").signature)
    # Stages of 3, 4, 6 and 3 bottlenecks; each stage's first has a projection shortcut.
    assert [b.kind for b in s.removable_blocks] == ["residual"] * (2 + 3 + 5 + 2)
    prunable = [g for g in s.channel_groups if g.prunable]
    # Two inner groups per bottleneck (16), one residual stream per stage (4), the stem (1).
    assert len(prunable) == 16 * 2 + 4 + 1
    assert sorted({g.size for g in prunable if len(g.producers) > 1}) == [256, 512, 1024, 2048]


@pytest.mark.slow
def test_clip_small_full_size(zoo):
    s = sir.analyze(sir.load("zoo:clip-small", zoo=zoo), zoo.entry("clip-small").signature)
    _check_transformer(s, layers=8, heads=4, head_size=64, ffn=1024)
    assert [sum(layer.stack == k for layer in s.layers) for k in (0, 1)] == [4, 4]
