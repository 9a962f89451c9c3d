"""The extension recipes of docs/ARCHITECTURE.md, each done once with a toy: a kind of pruning, an
algorithm, a data format and a quantization recipe (an objective: tests/search/test_compile.py; a target:
tests/targets/test_registry.py). Each toy is what a contributor writes in its one file, and the
one registry entry it adds is the `monkeypatch` line."""

from __future__ import annotations

import csv

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes import Knob, Pipeline, defaults
from simq.passes._knobs import depth_knob
from simq.passes.prune import Importance, Narrowing, Tap, WidthPass, collect_stats, predicted_params
from simq.passes.prune import _pipeline as prune_registry
from simq.passes.prune._common import keep_indices, slice_linear_inputs, slice_linear_outputs
from simq.passes.prune._stats import weight_in_out

MODEL = "zoo:bert-tiny"


class PruneLastFFNPass(WidthPass):
    """A toy kind of pruning: keep the k most active FFN neurons of the last layer (`tail.<layer>`),
    scored by its own importance."""

    kind = "tail"

    @staticmethod
    def knobs(structure):
        ffn = structure.layers[-1].ffn
        return [Knob(f"tail.{structure.layers[-1].index}", (ffn.width // 2, ffn.width), ffn.width, "FFN neurons of the last layer")]

    @staticmethod
    def importance(structure, graph):
        return TailImportance(structure.layers[-1])

    @staticmethod
    def narrowing(structure, config):
        layer = structure.layers[-1]
        k, ffn = config.get(f"tail.{layer.index}", layer.ffn.width), layer.ffn
        if k == ffn.width:
            return []
        return [*Narrowing.outputs(ffn.up, k), *Narrowing.inputs(ffn.down, k)]

    @staticmethod
    def within(structure, block):
        return [f"tail.{block.layer}"] if block.layer == structure.layers[-1].index else []

    def call(self, model):
        layer = self.structure.layers[-1]
        k = self.config.get(f"tail.{layer.index}", layer.ffn.width)
        if k == layer.ffn.width:
            return ir.passes.PassResult(model, False)
        keep = keep_indices(self._importance(layer.index), layer.ffn.width, k, self.order)
        slice_linear_outputs(model.graph, layer.ffn.up, keep)
        slice_linear_inputs(model.graph, layer.ffn.down, keep)
        return ir.passes.PassResult(model, True)


class TailImportance(Importance):
    """The toy's score: each neuron's mean absolute activation."""

    def __init__(self, layer):
        super().__init__([Tap(layer.ffn.down.node, layer.ffn.width)])
        self.layer = layer

    def scores(self, seen):
        return {self.layer.index: seen.mean_abs(self.layer.ffn.down.node)}


def test_a_kind_of_pruning_is_its_pass_and_one_entry(zoo, monkeypatch):
    monkeypatch.setattr(prune_registry, "PRUNING_PASSES", (*prune_registry.PRUNING_PASSES, PruneLastFFNPass))
    from simq.search._report import describe
    from simq.search._space import SearchSpace

    model = sir.load(MODEL, zoo=zoo)
    structure = sir.analyze(model, dict(zoo.entry("bert-tiny").signature))
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:1]
    pipeline = Pipeline(model, structure, stats=collect_stats(model, structure, batches))
    last = structure.layers[-1]
    knob = f"tail.{last.index}"
    assert knob in [k.name for k in SearchSpace(pipeline).knobs]  # the search sees it
    config = {**defaults(pipeline.knobs), knob: last.ffn.width // 2}
    built = pipeline.build(config)
    # It keeps the neurons its own importance ranks highest.
    scores = pipeline.stats.importance("tail", last.index)
    keep = np.sort(np.argsort(-scores, kind="stable")[: last.ffn.width // 2])
    assert not np.array_equal(keep, np.arange(len(keep)))
    np.testing.assert_array_equal(weight_in_out(built.graph, last.ffn.up), weight_in_out(model.graph, last.ffn.up)[:, keep])
    assert ort.InferenceSession(ir.to_proto(built).SerializeToString()).run(None, batches[0])[0].shape[0] == 16
    # The size estimate comes from the pass's own narrowing.
    assert sir.analyze(built, dict(zoo.entry("bert-tiny").signature)).params == predicted_params(structure, config)
    assert "tail 50%" in describe(config, pipeline)
    # Its knob means nothing once its layer is dropped: the pass says so, the pipeline resets it.
    depth = next(depth_knob(b.index) for b in structure.removable_blocks if b.layer == last.index)
    assert pipeline.repair({**config, depth: True})[knob] == last.ffn.width


class WidestFirst:
    """A toy algorithm: the unpruned model at every precision, then random candidates."""

    def __init__(self, space, goal, batch, seed):
        self.space, self.batch, self.rng = space, batch, np.random.default_rng(seed)
        self.predictions: dict = {}
        self._first = True

    asked: list = []

    def ask(self):
        WidestFirst.asked.append(self.batch)
        if self._first:
            self._first = False
            return self.space.anchors()[: self.batch]
        return self.space.sample(self.rng, self.batch)

    def tell(self, x, m):
        pass


def test_an_algorithm_is_its_class_and_one_entry(zoo, tmp_path, monkeypatch):
    from simq.search import ALGORITHMS, CompileOptions, JobSpec, compile_model, prepare_job

    monkeypatch.setitem(ALGORITHMS, "widest-first", WidestFirst)
    job = prepare_job(JobSpec(model=MODEL, baselines=False, cache_dir=zoo.cache_dir), zoo).job
    result = compile_model(job, CompileOptions(algorithm="widest-first", budget=2, population=2), tmp_path / "out")
    assert result.evaluated == 2 and WidestFirst.asked and result.pareto


def read_tagged_lines(path, encoding):
    """A toy data format: ``label<TAB>text`` per line in a ``.tagged`` file."""
    import datasets

    from simq.data import RawData

    rows = [line.split("\t", 1) for line in path.read_text(encoding).splitlines() if line.strip()]
    table = datasets.Dataset.from_dict({"label": [r[0] for r in rows], "text": [r[1] for r in rows]})
    return RawData({"data": table}, str(path), "table")


def test_a_data_format_is_its_reader_and_one_entry(text_model, make_sentences, tmp_path, monkeypatch):
    from simq.cli import main
    from simq.data import FILE_READERS

    monkeypatch.setitem(FILE_READERS, ".tagged", read_tagged_lines)
    data = tmp_path / "reviews.tagged"
    data.write_text("".join(f"{label}\t{text}\n" for text, label in make_sentences(120)))
    assert main(["compile", str(text_model), "--data", str(data), "--out", str(tmp_path / "out"), "--budget", "2", "--no-baselines"]) == 0
    with (tmp_path / "out" / "pareto.csv").open() as f:
        assert list(csv.DictReader(f))


def test_a_format_nobody_registered_is_named_with_the_ones_that_are(tmp_path):
    from simq.data import read_data
    from simq.errors import DataError

    (tmp_path / "x.tagged").write_text("pos\tgood\n")
    with pytest.raises(DataError, match=r"unknown kind of file.*\.csv.*\.npz"):
        read_data(tmp_path / "x.tagged")


def int8_weight_only(model, node, q, reduce_range):
    """A toy quantization recipe: what asks for INT4 weights gets INT8 weights instead."""
    from simq.passes.quant._rewrites import dequantized_weight

    dequantized_weight(model.graph, node, q, int4=False)


def test_a_quantization_recipe_is_its_rewrite_and_one_entry(zoo, monkeypatch):
    from simq.passes.quant import RECIPES, Recipe, calibrate
    from simq.passes.quant import _rewrites as recipe_registry

    toy = Recipe("INT8 weights only", lambda node, q, precision: precision == "int4w", int8_weight_only)
    monkeypatch.setattr(recipe_registry, "RECIPES", (toy, *RECIPES))
    model = sir.load(MODEL, zoo=zoo)
    structure = sir.analyze(model, dict(zoo.entry("bert-tiny").signature))
    batches = [x for x, _ in zoo.data("bert-tiny", "calibration").batches(16)][:1]
    pipeline = Pipeline(model, structure, calibration=calibrate(model, structure, batches))
    int4 = [k.name for k in pipeline.knobs if "int4w" in k.domain]
    built = pipeline.build({name: "int4w" for name in int4})
    dequantize = [n for n in built.graph if n.op_type == "DequantizeLinear"]
    assert len(dequantize) == len(int4) and all("block_size" not in n.attributes for n in dequantize)
    assert {n.inputs[0].dtype for n in dequantize} == {ir.DataType.INT8}
    assert ort.InferenceSession(ir.to_proto(built).SerializeToString()).run(None, batches[0])[0].shape[0] == 16
