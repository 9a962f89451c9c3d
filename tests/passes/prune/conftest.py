"""A prepared zoo model per name: structure, calibration statistics, fresh copies, a test feed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

import simq.ir as sir
from simq.passes.prune import PruningStats, collect_stats


@dataclass
class Prepared:
    name: str
    structure: sir.Structure
    stats: PruningStats
    fresh: Callable[[], ir.Model]
    feed: dict[str, np.ndarray]
    signature: dict[str, tuple[int, ...]]

    def run(self, model: ir.Model) -> list[np.ndarray]:
        session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, self.feed)


@pytest.fixture(scope="session")
def prepared(zoo):
    cache: dict[str, Prepared] = {}

    def get(name: str) -> Prepared:
        if name not in cache:
            path = zoo.path(name)
            model = sir.load(path)
            signature = dict(zoo.entry(name).signature)
            structure = sir.analyze(model, signature)
            batches = (inputs for inputs, _ in zoo.data(name, "calibration").batches(16))
            stats = collect_stats(model, structure, batches)
            feed = next(zoo.data(name, "test").batches(4))[0]
            cache[name] = Prepared(name, structure, stats, lambda: sir.load(path), feed, signature)
        return cache[name]

    return get

