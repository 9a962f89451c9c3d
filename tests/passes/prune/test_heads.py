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


def test_swin_heads_are_cut_with_their_relative_position_bias(tmp_path):
    """Swin adds a per-head relative position bias to the scores and merges its windows (and
    shifts them back) between the output projection and the residual Add: its layers are found,
    and dropping a head cuts that head's bias, so the model equals the original with the head's
    values silenced."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4, num_labels=3
    )  # fmt: skip
    model = transformers.SwinForImageClassification(config).eval()
    with torch.no_grad():  # zeros after init: every head would have the same bias
        for name, parameter in model.named_parameters():
            if "relative_position_bias_table" in name:
                parameter.normal_()
    model.save_pretrained(tmp_path / "swin")
    loaded = sir.load(tmp_path / "swin", cache_dir=tmp_path / "cache")
    signature = {d.name: (1, 3, 32, 32) for d in sir.input_domains(loaded)}
    structure = sir.analyze(loaded, signature)
    assert [layer.attention.num_heads for layer in structure.layers] == [2, 2, 4, 4]
    assert all(layer.attention.head_operands for layer in structure.layers)
    feed = {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}

    def run(m: ir.Model) -> np.ndarray:
        session = ort.InferenceSession(ir.to_proto(m).SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, feed)[0]

    config = {"heads.1": 1, "heads.3": 2}  # layers 1 and 3 shift their windows
    pruned = prune(sir.load(tmp_path / "swin", cache_dir=tmp_path / "cache"), structure, config, options=PruneOptions(order="first"))
    expected = sir.load(tmp_path / "swin", cache_dir=tmp_path / "cache")
    for layer, kept in ((1, 1), (3, 2)):
        a = structure.layers[layer].attention
        silenced = np.arange(kept * a.head_size, a.num_heads * a.head_size)
        zero_along(expected, a.v.weight, 1, silenced)
        if a.v.bias is not None:
            zero_along(expected, a.v.bias, 0, silenced)
    np.testing.assert_allclose(run(pruned), run(expected), atol=1e-4)
