from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes.prune import PruneHeadsPass, PruneOptions, prune

from ._equivalence import zero_along


def test_dropping_a_head_equals_silencing_its_values(prepared):
    """Expected: the original model with head 1's value projection zeroed in layer 0."""
    p = prepared("bert-tiny")
    a = p.structure.layers[0].attention
    pruned = prune(p.fresh(), p.structure, {"heads.0": 1}, options=PruneOptions(order="first"))

    expected = p.fresh()
    silenced = np.arange(a.head_size, 2 * a.head_size)
    zero_along(expected, a.v.weight, 1, silenced)
    zero_along(expected, a.v.bias, 0, silenced)
    np.testing.assert_allclose(p.run(pruned)[0], p.run(expected)[0], atol=1e-5)

    layer = sir.analyze(pruned, p.signature).layers[0]
    assert (layer.attention.num_heads, layer.attention.q.out_features) == (1, a.head_size)


def test_importance_keeps_the_most_important_heads(prepared):
    p = prepared("vit-tiny")
    importance = p.stats.importance("heads", 0)
    best = int(np.argmax(importance))
    a = p.structure.layers[0].attention
    pruned = prune(p.fresh(), p.structure, {"heads.0": 1}, p.stats)
    q = pruned.graph.node(a.q.node).inputs[1].const_value.numpy()
    original = p.fresh().graph.initializers[a.q.weight].const_value.numpy()
    np.testing.assert_array_equal(q, original[:, best * a.head_size : (best + 1) * a.head_size])


def test_head_count_constants_are_rewritten(prepared):
    """vit-tiny's head split reshapes spell out the head count (its sequence length is fixed)."""
    p = prepared("vit-tiny")
    a = p.structure.layers[1].attention
    pruned = prune(p.fresh(), p.structure, {"heads.1": 1}, p.stats)
    for name in a.head_reshapes:
        shape = pruned.graph.node(name).inputs[1].const_value.numpy()
        assert a.num_heads not in shape[2:3] and 1 in shape


def test_knobs(prepared):
    knobs = PruneHeadsPass.knobs(prepared("clip-tiny").structure)
    assert [k.name for k in knobs] == [f"heads.{i}" for i in range(4)]
    assert all(k.domain == (1, 2) and k.default == 2 for k in knobs)


def _per_head(model, part: str, fill) -> None:
    """`fill` every parameter whose name holds `part` (equal for every head after init)."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if part in name:
                fill(parameter)


def _pruned_equals_silenced(folder, shape, feed, config) -> sir.Structure:
    """Heads pruned first-k in the layers of `config` give the outputs of the original model with
    the other heads' values zeroed (what those heads add is then nothing)."""
    load = lambda: sir.load(folder, cache_dir=folder.parent / "cache")  # noqa: E731
    structure = sir.analyze(load(), {d.name: shape for d in sir.input_domains(load())})

    def run(m: ir.Model) -> np.ndarray:
        session = ort.InferenceSession(ir.to_proto(m).SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, feed)[0]

    pruned = prune(load(), structure, config, options=PruneOptions(order="first"))
    expected = load()
    for knob, kept in config.items():
        a = structure.layers[int(knob.split(".")[1])].attention
        width = a.num_heads * a.head_size
        silenced = np.arange(kept * a.head_size, width) + (2 * width if a.fused_qkv else 0)  # V: the last third of a fused Q/K/V
        zero_along(expected, a.v.weight, 1, silenced)
        if a.v.bias is not None:
            zero_along(expected, a.v.bias, 0, silenced)
    want = run(expected)
    assert np.abs(run(load()) - want).max() > 1e-2  # the silenced heads mattered
    np.testing.assert_allclose(run(pruned), want, atol=1e-4)
    return structure


@pytest.mark.parametrize(
    "family, per_head, fill, config",
    [
        ("Swin", "relative_position_bias_table", lambda p: p.normal_(), {"heads.1": 1, "heads.3": 2}),  # 1, 3: shifted windows
        ("Swinv2", "logit_scale", lambda p: p.uniform_(1.0, 3.0), {"heads.1": 1, "heads.2": 3}),
    ],
)
def test_swin_heads_are_cut_with_their_per_head_constants(family, per_head, fill, config, tmp_path):
    """Swin adds a per-head relative position bias to the scores and merges its windows (and
    shifts them back) between the output projection and the residual Add. Swin v2 also normalises
    queries and keys (their norms expanded back to the heads' shape), scales the scores by a
    per-head constant, takes its bias from a small network over the positions (a per-head
    constant once folded), and normalises each branch before its residual Add. Their layers are
    found, and dropping a head cuts that head's constants (`per_head`: equal for every head after
    init, so randomised)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model_config = getattr(transformers, f"{family}Config")(
        image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4, num_labels=3, initializer_range=0.5,
    )  # fmt: skip
    model = getattr(transformers, f"{family}ForImageClassification")(model_config).eval()
    _per_head(model, per_head, fill)
    model.save_pretrained(tmp_path / family)
    feed = {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    structure = _pruned_equals_silenced(tmp_path / family, (1, 3, 32, 32), feed, config)
    assert [layer.attention.num_heads for layer in structure.layers] == [2, 2, 4, 4]
    assert all(layer.attention.head_operands for layer in structure.layers)


def test_deberta_heads_are_cut_with_their_position_projections(tmp_path):
    """DeBERTa-v2 merges heads into the batch axis around its scores and adds position terms:
    the query and key heads times per-head projections of the relative position embeddings
    (folded to constants, tiled over the batch), gathered by an index expanded to batch x heads.
    Pruning cuts those projections, lets the index follow, and leaves the other layers' shared
    shape constants alone."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.DebertaV2Config(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        relative_attention=True, position_buckets=8, max_relative_positions=16, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
        share_att_key=True, num_labels=3, initializer_range=0.5,  # large weights: every head matters
    )  # fmt: skip
    transformers.DebertaV2ForSequenceClassification(config).eval().save_pretrained(tmp_path / "deberta")
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1, 100, (2, 16)), "token_type_ids": np.zeros((2, 16), np.int64), "attention_mask": np.ones((2, 16), np.int64)}
    structure = _pruned_equals_silenced(tmp_path / "deberta", (1, 16), feed, {"heads.0": 2, "heads.2": 1})
    assert [layer.attention.num_heads for layer in structure.layers] == [4, 4, 4]
    assert all(len(layer.attention.head_operands) == len(layer.attention.head_gathers) == 2 for layer in structure.layers)


def test_beit_layers_are_found_through_their_layer_scale(tmp_path):
    """BEiT (like DINOv2 and Data2VecVision) scales each block's output by a constant per channel
    before the residual Add, and adds a per-head relative position bias to the scores."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BeitConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        use_relative_position_bias=True, layer_scale_init_value=0.5, num_labels=3, initializer_range=0.5,
    )  # fmt: skip
    model = transformers.BeitForImageClassification(config).eval()
    _per_head(model, "relative_position_bias_table", lambda p: p.normal_())
    model.save_pretrained(tmp_path / "beit")
    feed = {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    structure = _pruned_equals_silenced(tmp_path / "beit", (1, 3, 32, 32), feed, {"heads.0": 1, "heads.1": 3})
    assert [(layer.attention.num_heads, layer.ffn.width) for layer in structure.layers] == [(4, 64), (4, 64)]
    assert all(layer.attention.head_operands for layer in structure.layers)



def test_modernbert_heads_are_cut_in_each_third_of_the_fused_projection(modernbert):
    """ModernBERT computes Q, K and V with one projection, split as (3, heads, head size), and
    rotates Q and K by position (cos and sin broadcast over the heads) before the scores; its
    layers alternate global and sliding-window attention (16 tokens, windows of 8)."""
    folder, feed = modernbert
    structure = _pruned_equals_silenced(folder, (1, 16), feed, {"heads.0": 3, "heads.2": 1})
    assert [(layer.attention.num_heads, layer.attention.fused_qkv) for layer in structure.layers] == [(4, True)] * 3
