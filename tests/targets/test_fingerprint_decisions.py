"""What a target offers follows the CPU it runs on: tests plan for both kinds of machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import simq.ir as sir
from simq.passes.fuse import OrtFusionPass
from simq.passes.quant import WHOLE_MODEL, InferencePrecisionPass
from simq.search import cached_baselines
from simq.targets import Artifact
from simq.targets.ort_cpu import OrtCpuTarget

AVX2 = ("avx2", "fma")
VNNI = ("avx2", "avx512", "avx512-bf16", "avx512-vnni", "fma")

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8] x) => (float[N, 4] y) {
    y = MatMul(x, w)
}
"""


@pytest.fixture
def tiny():
    proto = onnx.parser.parse_model(MODEL)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((8, 4), np.float32), "w"))
    return sir.cleanup(ir.from_proto(proto))


def test_ort_quantizes_dynamic_int8_weights_in_7_bits_where_int8_dot_products_saturate():
    assert OrtCpuTarget(isa=AVX2).lowering({}).reduce_range
    assert not OrtCpuTarget(isa=VNNI).lowering({}).reduce_range
    fusions = OrtCpuTarget(isa=VNNI).lowering({"x": (1, 8)}).fusions
    assert isinstance(fusions[0], OrtFusionPass)
    for target in (OrtCpuTarget(isa=AVX2), OrtCpuTarget(isa=VNNI)):
        assert target.supports("Attention", "int8dyn") and target.supports("MatMul", "int4w")
        assert not target.supports("Conv", "int8dyn") and not target.supports(WHOLE_MODEL, "bf16")
    assert not OrtCpuTarget(isa=("fma",)).supports("MatMul", "int8")  # an x86 CPU without AVX2: no integer kernels
    assert OrtCpuTarget(isa=()).supports("MatMul", "int8dyn")  # an ISA that could not be read: offered, measured
    arm = OrtCpuTarget(isa=("dotprod", "neon"))  # Apple silicon, Graviton: integer dot products
    assert arm.supports("MatMul", "int8dyn") and not arm.lowering({}).reduce_range
    assert OrtCpuTarget(isa=AVX2).fingerprint().isa == AVX2


@pytest.mark.openvino
def test_openvino_offers_bf16_only_where_the_cpu_has_it_and_records_the_hint(tiny, tmp_path):
    from simq.targets.openvino_cpu import OpenVinoCpuTarget

    with_bf16, without = OpenVinoCpuTarget(isa=VNNI), OpenVinoCpuTarget(isa=AVX2)
    assert with_bf16.supports(WHOLE_MODEL, "bf16") and not without.supports(WHOLE_MODEL, "bf16")
    assert with_bf16.default_precision() == "bf16" and without.default_precision() == "fp32"
    assert not with_bf16.supports("MatMul", "int8dyn")
    plain = with_bf16.lower(tiny, tmp_path / "f32")
    asked = tiny.clone()
    InferencePrecisionPass("bf16")(asked)
    bf16 = with_bf16.lower(asked, tmp_path / "bf16")
    assert plain.settings["INFERENCE_PRECISION_HINT"] == "f32" and bf16.settings["INFERENCE_PRECISION_HINT"] == "bf16"
    assert plain.digest() != bf16.digest()  # measured and cached apart
    # The hint travels in the IR, so the shipped openvino_model.xml says how it is meant to run.
    import openvino

    read = openvino.Core().read_model(str(bf16.path))
    assert read.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "bf16"
    feed = {"x": np.ones((2, 8), np.float32)}
    np.testing.assert_allclose(with_bf16.load(bf16)(feed)[0], 8 * np.ones((2, 4)), rtol=1e-2)


def test_baselines_are_built_once_and_read_back(tiny, tmp_path):
    target = OrtCpuTarget()
    calls = []

    def build(folder: Path) -> Artifact:
        calls.append(folder)
        return target.lower(tiny, folder)

    first = cached_baselines({"mine": build}, tmp_path / "cache", "model|fingerprint|data")["mine"](tmp_path / "a")
    again = cached_baselines({"mine": build}, tmp_path / "cache", "model|fingerprint|data")["mine"](tmp_path / "b")
    other = cached_baselines({"mine": build}, tmp_path / "cache", "model|fingerprint|other data")["mine"](tmp_path / "c")
    assert len(calls) == 2 and first.digest() == again.digest() == other.digest()
    assert again.path.is_file() and dict(again.settings) == dict(first.settings)

    def broken(folder: Path) -> Artifact:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_baselines({"mine": broken}, tmp_path / "cache", "x")["mine"](tmp_path / "d")
    assert not [p for p in (tmp_path / "cache").rglob("*.partial")]
