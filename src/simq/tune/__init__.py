"""Elastic fine-tuning on the PyTorch side: a model becomes a weight-sharing super-network whose
first-k sub-networks are what the ONNX pruning passes cut (`simq tune`)."""

from simq.ir import TorchSource, transformers_source
from simq.tune._elastic import ElasticLayer, ElasticNetwork
from simq.tune._tune import TuneOptions, TuneResult, lr_factor, tune

__all__ = [
    "ElasticLayer",
    "ElasticNetwork",
    "TorchSource",
    "TuneOptions",
    "TuneResult",
    "lr_factor",
    "transformers_source",
    "tune",
]
