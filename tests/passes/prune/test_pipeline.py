from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import simq.ir as sir
from simq.errors import InvalidConfigError
from simq.passes import defaults
from simq.passes.prune import PruneOptions, predicted_params, prune, pruning_knobs

MODELS = ["bert-tiny", "vit-tiny", "clip-tiny", "resnet-tiny", "digits-cnn", "digits-resnet", "digits-vit"]


@pytest.mark.parametrize("name", MODELS)
def test_identity_config_reproduces_outputs(prepared, name):
    p = prepared(name)
    model = prune(p.fresh(), p.structure, defaults(pruning_knobs(p.structure)), p.stats, PruneOptions(reconstruct=True))
    for got, want in zip(p.run(model), p.run(p.fresh())):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("reconstruct", [False, True])
def test_random_configs_give_valid_models_of_the_predicted_size(prepared, name, reconstruct):
    p = prepared(name)
    knobs = pruning_knobs(p.structure)
    rng = np.random.default_rng(len(name))
    for _ in range(3):
        config = {k.name: k.domain[rng.integers(len(k.domain))] for k in knobs}
        model = prune(p.fresh(), p.structure, config, p.stats, PruneOptions(reconstruct=reconstruct))
        onnx.checker.check_model(ir.to_proto(model), full_check=True)
        outputs = p.run(model)
        assert [o.shape for o in outputs] == [o.shape for o in p.run(p.fresh())]
        assert all(np.isfinite(o).all() for o in outputs)
        after = sir.analyze(model, p.signature)
        assert after.params == predicted_params(p.structure, config)
        _check_widths(p.structure, after, config)


def _check_widths(before: sir.Structure, after: sir.Structure, config) -> None:
    """The pruned model's analysis finds exactly the kept heads, neurons and layers."""
    kept = [layer for layer in before.layers if not _dropped(before, config, layer.index)]
    assert len(after.layers) == len(kept)
    for old, new in zip(kept, after.layers):
        assert new.attention.num_heads == config[f"heads.{old.index}"]
        assert new.attention.head_size == old.attention.head_size
        assert new.ffn.width == config[f"ffn.{old.index}"]


def _dropped(structure, config, layer: int) -> bool:
    return any(config[f"depth.{b.index}"] for b in structure.removable_blocks if b.layer == layer)


def test_unknown_knob_and_out_of_domain_value(prepared):
    p = prepared("bert-tiny")
    with pytest.raises(InvalidConfigError, match="did you mean 'ffn.1'"):
        prune(p.fresh(), p.structure, {"ffn.7": 64})
    with pytest.raises(InvalidConfigError, match="cannot be 100"):
        prune(p.fresh(), p.structure, {"ffn.0": 100})


def test_removing_every_head_needs_dropping_the_layer(prepared):
    p = prepared("bert-tiny")
    with pytest.raises(InvalidConfigError, match="removes every head of layer 1"):
        prune(p.fresh(), p.structure, {"heads.1": 0})
    block = next(b.index for b in p.structure.removable_blocks if b.layer == 1)
    model = prune(p.fresh(), p.structure, {"heads.1": 0, f"depth.{block}": True})
    assert len(sir.analyze(model, p.signature).layers) == 1


def test_importance_order_needs_statistics(prepared):
    p = prepared("bert-tiny")
    with pytest.raises(InvalidConfigError, match="statistics"):
        prune(p.fresh(), p.structure, {"ffn.0": 64})
    prune(p.fresh(), p.structure, {"ffn.0": 64}, options=PruneOptions(order="first"))


def test_shared_initializers_are_not_mutated(prepared):
    """A pruned node gets its own tensor; the unpruned model it came from is untouched."""
    p = prepared("bert-tiny")
    model = p.fresh()
    before = {name: v.const_value.numpy().copy() for name, v in model.graph.initializers.items()}
    other = p.fresh()
    prune(model, p.structure, {"ffn.0": 64, "heads.0": 1}, p.stats)
    for name, value in other.graph.initializers.items():
        np.testing.assert_array_equal(value.const_value.numpy(), before[name])


@pytest.mark.openvino
@pytest.mark.parametrize("name", ["bert-tiny", "resnet-tiny", "clip-tiny"])
def test_pruned_models_run_in_openvino(prepared, name, tmp_path):
    ov = pytest.importorskip("openvino")
    p = prepared(name)
    config = {k.name: k.domain[len(k.domain) // 2] for k in pruning_knobs(p.structure) if not k.name.startswith("depth")}
    model = prune(p.fresh(), p.structure, config, p.stats, PruneOptions(reconstruct=True))
    path = sir.save(model, tmp_path / "pruned.onnx")
    compiled = ov.Core().compile_model(str(path), "CPU")
    got = compiled(p.feed)
    for i, want in enumerate(p.run(model)):
        # OpenVINO's CPU kernels (GELU, softmax) differ from ONNX Runtime's in the last few bits.
        np.testing.assert_allclose(got[compiled.outputs[i]], want, rtol=1e-2, atol=1e-2)
