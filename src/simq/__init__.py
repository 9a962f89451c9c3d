"""SimQ: a hardware-aware model compiler.

SimQ lowers a trained network to an ONNX-derived IR, searches jointly for a smaller
sub-network and a per-node quantization policy for one hardware target, and emits the
Pareto-optimal compiled artifacts.

    import simq

    run = simq.compile("my-classifier/", data="reviews.csv", budget=30, max_accuracy_drop=1)
    model = run.best().load()
    model(["a film worth seeing"])          # -> ["pos"]
    run.best().save_pretrained("shipped/")  # model.onnx, config.json, tokenizer files
"""

from simq._api import CompileRun, compile, tune
from simq.errors import SimqError

__all__ = ["CompileRun", "SimqError", "__version__", "compile", "tune"]

__version__ = "0.1.0"
