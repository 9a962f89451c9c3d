"""Running passes so that a user's mistake surfaces as itself, not wrapped by the pass manager."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from simq.errors import SimqError

__all__ = ["run_passes"]


def run_passes(passes: Sequence[ir.passes.PassBase], model: ir.Model) -> ir.Model:
    """Run `passes` in order on `model` (none: `model` as it is); a `SimqError` raised inside one
    is re-raised unwrapped, anything else as its root cause, so that a failed candidate's record
    says what failed rather than "An error occurred at step 0"."""
    if not passes:
        return model
    try:
        return ir.passes.PassManager(list(passes))(model).model
    except ir.passes.PassError as e:
        # PassManager wraps a failure twice (the pass, then the step); the wrapper messages
        # name passes, which is for developers, while the cause speaks to the user.
        cause: BaseException = e
        while isinstance(cause, ir.passes.PassError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, SimqError):
            raise cause from None
        while cause.__cause__ is not None:  # a bug: the innermost error names it
            cause = cause.__cause__
        if cause is e:
            raise
        raise cause from None  # its traceback still points into the pass
