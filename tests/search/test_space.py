"""The search space: uniform precision anchors first, then samples spread over the space."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import simq.ir as sir
from simq.passes import Lowering, Pipeline
from simq.passes.quant import calibrate
from simq.search import SearchSpace
from simq.targets.openvino_cpu import OpenVinoCpuTarget
from simq.targets.openvino_cpu._kernels import int8_dense_ratio


@pytest.fixture(scope="module")
def space(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    structure = sir.analyze(model, dict(zoo.entry("bert-tiny").signature))
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:1]
    return SearchSpace(Pipeline(model, structure, calibration=calibrate(model, structure, batches)))


def _precisions(space: SearchSpace, x: np.ndarray) -> Counter:
    config = space.decode(x)
    return Counter(v for k, v in config.items() if k.startswith("quant."))


def test_anchors_are_uniform_policies(space):
    anchors = space.anchors()
    assert space.precisions == ["fp32", "int8dyn", "int8", "int4w"] and len(anchors) == 5
    everything_int8dyn, everything_int8, most_int4, int8dyn_75, int8dyn_50 = (space.decode(x) for x in anchors)
    # Dynamic INT8 where a unit takes it (weighted MatMuls), static INT8 on the others.
    assert set(_precisions(space, anchors[0])) == {"int8dyn", "int8"}
    assert set(_precisions(space, anchors[1])) == {"int8"}
    # INT4 where a unit offers it (weighted MatMuls), the next precision on the others.
    mix = _precisions(space, anchors[2])
    assert set(mix) == {"int4w", "int8"} and mix["int4w"] > mix["int8"]
    widths = [k for k in space.knobs if k.name.split(".")[0] in ("heads", "ffn")]
    for config in (everything_int8dyn, everything_int8, most_int4):
        assert all(config[k.name] == k.default for k in space.knobs if not k.name.startswith("quant."))
    for config, level in ((int8dyn_75, 0.75), (int8dyn_50, 0.5)):
        # The domain value nearest to the level (within half a step of it).
        assert all(abs(config[k.name] - level * k.default) <= np.diff(k.domain).max() / 2 for k in widths)
        assert config == space.decode(space.encode(config))


def test_width_and_depth_seeds_take_the_precision_the_target_measured_pays(zoo, space):
    """Where INT8 kernels do not pay on the CPU, the lattice is FP32 sub-networks; the uniform
    precision policies stay first either way."""
    fp32_seeds = SearchSpace(Pipeline(space.pipeline.model, space.pipeline.structure, calibration=space.pipeline.calibration,
                                      lowering=Lowering(seed_precision="fp32")))  # fmt: skip
    uniform, lattice = fp32_seeds.anchors()[:3], fp32_seeds.anchors()[3:]
    assert [fp32_seeds.key(x) for x in uniform] == [space.key(x) for x in space.anchors()[:3]]
    assert len(lattice) == 2 and all(set(_precisions(fp32_seeds, x)) == {"fp32"} for x in lattice)
    assert all(set(_precisions(space, x)) == {"int8dyn", "int8"} for x in space.anchors()[3:])
    heads = [i for i, k in enumerate(space.knobs) if k.name.startswith("heads.")]
    assert [list(x[heads]) for x in lattice] == [list(x[heads]) for x in space.anchors()[3:]]


@pytest.mark.openvino
def test_openvino_times_its_int8_dense_kernels_to_choose_the_seed_precision():
    ratio = int8_dense_ratio({"INFERENCE_NUM_THREADS": "2", "INFERENCE_PRECISION_HINT": "f32"})
    lowering = OpenVinoCpuTarget().lowering({})
    assert ratio > 0 and lowering.signed_operands
    # The choice follows the timing (a second timing may land on the other side of the line), and
    # is INT8 where INT8 pays, not the first compressed precision the knobs offer (int8w, which
    # runs well behind INT8 there).
    assert lowering.seed_precision in ("int8", "fp32") and lowering.seed_precision.upper() in lowering.choices[0]


def test_bf16_anchors_where_the_target_runs_whole_models_in_bf16(zoo):
    model = sir.load("zoo:bert-tiny", zoo=zoo)
    structure = sir.analyze(model, dict(zoo.entry("bert-tiny").signature))
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:1]
    calibration = calibrate(model, structure, batches)
    with_bf16 = OpenVinoCpuTarget(isa=("avx2", "avx512", "avx512-bf16"))
    without = OpenVinoCpuTarget(isa=("avx2",))
    space = SearchSpace(Pipeline(model, structure, calibration=calibration, supports=with_bf16.supports))
    assert space.model_precisions == ["fp32", "bf16"]
    first = space.decode(space.anchors()[0])
    assert first["precision"] == "bf16" and all(v == "fp32" for k, v in first.items() if k.startswith("quant."))
    assert {space.decode(x)["precision"] for x in space.anchors()} == {"fp32", "bf16"}
    assert "precision" not in {k.name for k in Pipeline(model, structure, calibration=calibration, supports=without.supports).knobs}


def test_a_first_population_starts_with_the_anchors(space):
    first = space.initial(np.random.default_rng(0), 7)
    assert first.shape == (7, space.size)
    assert [space.key(x) for x in first[:5]] == [space.key(x) for x in space.anchors()]
    assert space.initial(np.random.default_rng(0), 1).shape == (1, space.size)


def test_samples_are_canonical_and_each_near_one_precision_and_one_width_level(space):
    samples = space.sample(np.random.default_rng(1), 60)
    assert all(space.key(space.repair(x)) == space.key(x) for x in samples)
    # A base precision with a few deviations, not a random mix: most units set as one uniform
    # policy sets them (FP32 or an anchor, which maps a precision a unit lacks to its nearest).
    uniform = [space.decode(space.encode({})), *map(space.decode, space.anchors())]

    def near_uniform(x: np.ndarray) -> float:
        config = space.decode(x)
        units = [k for k in config if k.startswith("quant.")]
        return max(sum(config[k] == policy[k] for k in units) / len(units) for policy in uniform)

    assert np.median([near_uniform(x) for x in samples]) >= 0.75  # uniformly random vectors: ~0.3
    assert len({space.key(x) for x in samples}) > 50
    ffn = [i for i, k in enumerate(space.knobs) if k.name.startswith("ffn.")]
    moved = [x[ffn][x[ffn] != space.upper[ffn]] for x in samples]
    # The FFN widths a candidate prunes sit within a step or two of one level, not all over the range.
    assert np.median([np.ptp(m) for m in moved if len(m) > 1]) <= 2
