"""Random-weight transformers models, for speed and size work."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from simq.zoo._build import export, onnx_max_abs_diff, param_count, quiet, seeded
from simq.zoo._data import random_inputs
from simq.zoo._spec import Recipe

__all__ = ["build", "make_model", "torch_source"]

_NOISE = 0.02
# Enough random images for BatchNorm statistics that differ per channel and track the real
# activations, so that a random ResNet-50's activations stay in a realistic range instead of
# growing a hundredfold through the blocks.
_BN_CALIBRATION_IMAGES = 16
_RANDOMISATION = (
    "biases ~ N(0, 0.02), norm weights ~ 1 + N(0, 0.02), "
    "BatchNorm running statistics measured on 16 seeded random images"
)


def make_model(recipe: Recipe) -> transformers.PreTrainedModel:
    """The seeded random-weight PyTorch model of `recipe`, in eval mode; the same on every call."""
    options = recipe.options
    # A copy, because config classes may edit the nested dicts (CLIP's tower configs) they get.
    config = getattr(transformers, options["config_class"])(**copy.deepcopy(options["config"]))
    with seeded(recipe.seed), quiet():
        model = getattr(transformers, options["model_class"])(config, **options.get("model_kwargs", {}))
    _rerandomise(model, recipe)
    return model.eval()


def torch_source(recipe: Recipe, folder: Path):
    """The model as PyTorch: the same seeded weights its ONNX file was exported from (models of
    one output; a TorchSource gives one tensor)."""
    from simq.errors import InvalidArgumentError
    from simq.ir import TorchSource

    if len(recipe.entry.outputs) != 1:
        raise InvalidArgumentError(f"zoo model {recipe.entry.name!r} has {len(recipe.entry.outputs)} outputs; its PyTorch source gives one.")
    model = make_model(recipe)
    axes = {spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in recipe.entry.inputs}
    names = tuple(spec.name for spec in recipe.entry.inputs)
    output = recipe.entry.outputs[0]

    class _Output(torch.nn.Module):  # the entry's first output as "logits", what TorchSource reads
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, **inputs):
            return self.inner(**inputs)[output]

    return TorchSource(_Output().eval(), names, axes, lambda tuned, out: tuned.inner.save_pretrained(out), f"zoo:{recipe.entry.name}")


def build(recipe: Recipe, out_dir: Path) -> dict[str, Any]:
    """Build the random-weight model of `recipe` into `out_dir`; return its info fields."""
    model = make_model(recipe)
    example = random_inputs(recipe.entry, 2, np.random.default_rng([recipe.seed, 100]), recipe.vocab_size, recipe.eos_token_id)
    path = export(model, recipe.entry, example, out_dir)
    return {
        "params": param_count(model),
        "config": model.config.to_dict(),
        "randomisation": _RANDOMISATION,
        "onnx_max_abs_diff": onnx_max_abs_diff(path, model, recipe.entry, example),
    }


def _rerandomise(model: torch.nn.Module, recipe: Recipe) -> None:
    """Give every bias and norm parameter its own small random values.

    transformers initialises them all to 0 or 1; the exporter's optimizer would then merge the
    identical initializers into one shared tensor, which makes the graph unrealistic and its
    parameter count wrong. BatchNorm statistics start at mean 0 and variance 1 (BN would be the
    identity), so they are measured instead, as training would.
    """
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    norm_types = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if name == "bias":
                    param.normal_(0.0, _NOISE, generator=generator)
                elif name == "weight" and isinstance(module, norm_types):
                    param.normal_(1.0, _NOISE, generator=generator)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not batch_norms:
        return
    images = random_inputs(recipe.entry, _BN_CALIBRATION_IMAGES, np.random.default_rng([recipe.seed, 101]))
    momenta = [bn.momentum for bn in batch_norms]
    for bn in batch_norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: the statistics of exactly this batch
    with torch.no_grad():
        model.train()(**{k: torch.from_numpy(v) for k, v in images.items()})
    model.eval()
    for bn, momentum in zip(batch_norms, momenta):
        bn.momentum = momentum
