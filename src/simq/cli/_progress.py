"""What the long commands show while they work: bars on a terminal, plain lines in a log."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from simq.search import describe

__all__ = ["CompileProgress", "Progressive"]


class Progressive:
    """A rich progress display on a terminal, or None (plain lines) in a log or a pipe; a context
    manager either way. Plain lines carry the minutes since it started (`line`)."""

    def __init__(self, console: Console, *columns) -> None:
        self.console = console
        self.plain = not console.is_terminal
        self.start = time.monotonic()
        self.bar = None if self.plain else Progress(*columns, console=console)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc) if self.bar is not None else None

    def line(self, text: str) -> None:
        print(f"[{(time.monotonic() - self.start) / 60:5.1f} min] {text}", file=self.console.file, flush=True)


class CompileProgress(Progressive):
    """A progress bar per phase on a terminal; elsewhere (CI logs, pipes) one plain line per phase
    and per candidate, with the elapsed time. Called as ``progress(phase, done, total, detail)``."""

    _LABELS = {
        "search": "validating candidates",
        "final": "final pass: lowering, timing, scoring",
        "cost model": "measuring the cost model's samples",
    }

    def __init__(self, console: Console, pipeline, reference_size: float | None = None) -> None:
        super().__init__(
            console, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()
        )  # fmt: skip
        self.pipeline = pipeline  # describes each candidate's config
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int, detail=None) -> None:
        if not self.plain:
            if phase not in self.tasks:
                self.tasks[phase] = self.bar.add_task(self._LABELS.get(phase, phase), total=total)
            self.bar.update(self.tasks[phase], completed=done, total=total)
            return
        if phase not in self.tasks:
            self.tasks[phase] = 0
            self.line(f"{self._LABELS.get(phase, phase)} ({total})")
        if phase == "search" and detail is not None:
            m = detail.metrics
            score = f"{m['accuracy']:.2f}" if "accuracy" in m else "-"
            if "scored_examples" in m:
                score += f" ({'accepted' if m.get('accepted_early') else 'rejected'} early, on {m['scored_examples']:,.0f} examples)"
            ratio = f"{m['latency_ratio']:.3f}x" if "latency_ratio" in m else f"{m.get('latency_ms', float('nan')):.2f} ms"
            size = f"{m['size_bytes'] / 1e6:.1f} MB" if "size_bytes" in m else "-"
            status = f"failed: {detail.error}" if detail.error else f"score {score} · latency {ratio} · {size}"
            if detail.worker:
                status += f" · on {detail.worker}"
            self.line(f"#{detail.id} ({done}/{total}) {describe(detail.config, self.pipeline)} · {status} · {detail.seconds:.1f} s")
        elif phase == "final" and isinstance(detail, str):  # what the final pass just did: lowered, timed, scored
            self.line(f"final pass: {detail}")
        if phase != "search" and done == total:
            self.line(f"{self._LABELS.get(phase, phase)} done")
