"""InferencePrecisionPass: the precision a runtime runs the model's float parts in."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from simq.errors import InvalidConfigError
from simq.passes._knobs import Knob

__all__ = ["INFERENCE_PRECISION", "INFERENCE_PRECISION_METADATA", "WHOLE_MODEL", "InferencePrecisionPass", "inference_precision"]

#: The knob: ``fp32`` or ``bf16``.
INFERENCE_PRECISION = "precision"
#: ``metadata_props`` key a target reads when it compiles the model.
INFERENCE_PRECISION_METADATA = "simq.inference_precision"
#: The op type a target's ``supports`` is asked about for whole-model precisions.
WHOLE_MODEL = "*"
_CHOICES = ("fp32", "bf16")


class InferencePrecisionPass(ir.passes.InPlacePass):
    """Asks the runtime to run the model's floating-point parts in `precision`.

    OpenVINO's CPU plugin runs a model in BF16 on CPUs with AVX512-BF16 or AMX when asked
    (its ``INFERENCE_PRECISION_HINT``); it has no per-node switch, so this is one choice for the
    whole model, combined with per-node INT8/INT4 (integer kernels stay integer).

    Changes: sets ``metadata_props[INFERENCE_PRECISION_METADATA]`` (removes it for ``fp32``);
    the graph is untouched, but the model hashes differently, so measurements are not mixed.
    """

    def __init__(self, precision: str) -> None:
        super().__init__()
        if precision not in _CHOICES:
            raise InvalidConfigError(f"inference precision {precision!r} is not one of {', '.join(_CHOICES)}.")
        self.precision = precision

    @staticmethod
    def knobs(supports: Callable[[str, str], bool] | None) -> list[Knob]:
        """The ``precision`` knob, when the target runs whole models in BF16 on this CPU."""
        if supports is None or not supports(WHOLE_MODEL, "bf16"):
            return []
        return [Knob(INFERENCE_PRECISION, _CHOICES, "fp32", "inference precision of the model's float parts (whole model)")]

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = model.metadata_props.get(INFERENCE_PRECISION_METADATA)
        if self.precision == "fp32":
            model.metadata_props.pop(INFERENCE_PRECISION_METADATA, None)
        else:
            model.metadata_props[INFERENCE_PRECISION_METADATA] = self.precision
        return ir.passes.PassResult(model, before != model.metadata_props.get(INFERENCE_PRECISION_METADATA))


def inference_precision(model: ir.Model) -> str:
    """The precision `model` asks its runtime for (``fp32`` unless an `InferencePrecisionPass` said otherwise)."""
    return model.metadata_props.get(INFERENCE_PRECISION_METADATA, "fp32")
