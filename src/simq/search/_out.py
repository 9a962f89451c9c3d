"""The output folder of a compile run: checked before minutes of work, created when the work starts."""

from __future__ import annotations

import os
from pathlib import Path

from simq.errors import InvalidArgumentError, OutputError
from simq.search._store import Store

__all__ = ["check_out", "make_out"]


def check_out(out: Path, resume: bool) -> None:
    """Fail now, before minutes of preparation, if `out` holds another run (without `resume`) or
    there is nothing to resume.

    Raises:
        InvalidArgumentError: As above.
        OutputError: `out` is a file.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder.")
    ancestor = next(p for p in (out, *out.parents) if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise OutputError(f"cannot write to {out}: {ancestor} is not a writable folder.")
    holds_run = (out / Store.FILENAME).is_file()
    if holds_run and not resume:
        raise InvalidArgumentError(f"{out} already holds a compile run; pass --resume to continue it or choose another --out.")
    if resume and not holds_run:
        raise InvalidArgumentError(f"{out} holds no compile run to resume; drop --resume to start one.")


def make_out(out: Path) -> None:
    """Create the output folder and check it takes files.

    Raises:
        OutputError: It cannot be written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".simq-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write to {out}: {e.strerror or e}.") from None
