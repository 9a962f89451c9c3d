"""The one-sentence verdict of a compile run: the best baseline against SimQ's fastest, both within the constraint."""

from __future__ import annotations

from simq.search import Record, headline


def _record(id: int, kind: str, accuracy: float, ratio: float, baseline: str | None = None) -> Record:
    config = {"baseline": baseline} if baseline else {}
    final = {"accuracy": accuracy, "latency_ratio": ratio}
    return Record(id, config, kind, "ok", None, dict(final), {}, None, "fp", None, 1.0, final)


def test_the_fastest_within_the_constraint_on_both_sides():
    reference = _record(1, "reference", 70.0, 1.0)
    baselines = [
        _record(2, "baseline", 69.5, 0.6, "fused + dynamic INT8"),
        _record(3, "baseline", 50.0, 0.4, "static INT8"),  # fast, but 20 points down: not a choice
    ]
    front = [_record(7, "candidate", 69.2, 0.45), _record(8, "candidate", 60.0, 0.2)]
    text = headline(reference, baselines, front, 1.0)
    assert text == (
        "Best baseline within 1 point of FP32: fused + dynamic INT8 at 0.60x FP32. "
        "Fastest SimQ model within 1 point of FP32: #7 at 0.45x FP32, 1.33x faster."
    )
    assert "no SimQ model" in headline(reference, baselines, front[1:], 1.0)
    assert "static INT8 at 0.40x" in headline(reference, baselines, front, 25.0)
