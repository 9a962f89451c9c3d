"""What a compile run leaves for people: ``pareto.csv`` and ``report.html`` (plots and tables)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from simq.eval import EarlyStopping
from simq.passes import Knob, Pipeline, is_precision, knob_kind
from simq.passes.quant import INFERENCE_PRECISION, PRECISIONS
from simq.search._objectives import OBJECTIVES, Objective, References, accuracy_drop, metric, normalised_values
from simq.search._pareto import hypervolume
from simq.search._plots import pareto_plots
from simq.search._store import Record, Store

__all__ = ["SUMMARY_FILE", "describe", "display_table", "headline", "hypervolume_curve", "write_report"]

#: What `simq show` reads: the run's table and verdict, written beside report.html.
SUMMARY_FILE = "summary.json"
#: Accuracy drop (points) that bounds the hypervolume when no --max-accuracy-drop is given.
DEFAULT_DROP_SPAN = 5.0


_LABELS = {"ffn": "FFN"}


def describe(config: Mapping[str, Hashable], pipeline: Pipeline) -> str:
    """A one-line summary of a config of `pipeline`: what was pruned and how nodes run.

    The knobs of the blocks the config drops (`Pipeline.moot`) are left out of the width shares
    and the precision counts: what a dropped block would have kept or run is not in the model
    (three of six layers dropped, the rest at half width, reads "heads 50%", not 75 %).
    """
    if "baseline" in config:
        return str(config["baseline"])
    moot = pipeline.moot(config)
    by_kind: dict[str, list[Knob]] = {}
    for knob in pipeline.knobs:
        if knob.name not in moot or knob_kind(knob.name) == "depth":
            by_kind.setdefault(knob_kind(knob.name), []).append(knob)
    parts = []
    depth = by_kind.get("depth", [])
    if depth:
        parts.append(f"blocks dropped {sum(bool(config.get(k.name)) for k in depth)}/{len(depth)}")
    for kind, knobs_of_kind in by_kind.items():  # every kind of width: the share of its units kept
        widths = [k for k in knobs_of_kind if isinstance(k.default, int) and not isinstance(k.default, bool)]
        if widths and not is_precision(widths[0].name):
            kept = sum(config.get(k.name, k.default) for k in widths)
            parts.append(f"{_LABELS.get(kind, kind)} {kept / sum(k.default for k in widths):.0%}")
    # A stored config names every unit (fused attentions too); a partial one counts the knobs given.
    quant = [v for k, v in config.items() if is_precision(k) and k not in moot]
    precisions = Counter(quant or [k.default for k in by_kind.get("quant", [])])
    if precisions:
        parts.append(" ".join(f"{p} {precisions[p]}" for p in PRECISIONS[1:] + PRECISIONS[:1] if precisions[p]))
    if config.get(INFERENCE_PRECISION, "fp32") != "fp32":
        parts.append(f"{config[INFERENCE_PRECISION]} float parts")
    return " · ".join(parts)


def reference_point(objectives: Sequence[Objective], drop_span: float) -> np.ndarray:
    """Hypervolume bound: `drop_span` points of accuracy, and each other objective's `hv_bound`
    (the FP32 model's latency and size)."""
    return np.array([drop_span if o.name == "accuracy" else o.hv_bound for o in objectives])


def _objectives(objectives: Sequence[str | Objective]) -> list[Objective]:
    return [o if isinstance(o, Objective) else OBJECTIVES[o] for o in objectives]


def hypervolume_curve(
    records: Sequence[Record],
    reference: Record,
    objectives: Sequence[str | Objective],
    drop_span: float = DEFAULT_DROP_SPAN,
    accuracy_reference: Record | None = None,
) -> list[float]:
    """Hypervolume of the candidates validated so far, after each validated candidate (in order)."""
    chosen = _objectives(objectives)
    references = References(reference, accuracy_reference or reference)
    point = reference_point(chosen, drop_span)
    values, curve = [], []
    for record in records:
        if record.kind != "candidate":
            continue
        v = normalised_values(record, references, chosen)
        if v is not None and np.all(v <= point):
            values.append(v)
        curve.append(hypervolume(np.array(values), point) if values else 0.0)
    return curve


def _row(record: Record, references: References, pipeline: Pipeline, allowed: float | None, base: Record | None) -> dict[str, object]:
    """One table row: end-of-run values where there are some, else the search's; accuracy drops
    paired on the same examples with their 95 % interval (test) and the bound that accepted the
    model (the search's split); the speed-up over the run's bar (`base`, see `bar`): a ratio of
    two models timed in the same rotation, which a re-time in another process reproduces more
    closely than a ratio to FP32 (docs/RETIME.md)."""
    if base is None or not _final(record, "latency_ratio"):
        over = (None, None, None)
    else:  # the bar against itself is 1 exactly, not its interval twice
        over = (1.0, 1.0, 1.0) if record.id == base.id else speedup(base, record)
    accuracy = metric(record, "accuracy", "accuracy" in references.accuracy.final)
    test = accuracy_drop(record, references, final=True)
    search = accuracy_drop(record, references, final=False)
    tested = test is not None and "accuracy" in record.final

    def rounded(value, digits):
        return None if value is None else round(value, digits)

    return {
        "id": record.id,
        "kind": record.kind,
        "baseline": record.config.get("baseline"),
        "accuracy": rounded(accuracy, 3),
        "accuracy_drop": rounded(test.estimate if test else None, 3),
        "accuracy_drop_low": rounded(test.low if tested else None, 3),
        "accuracy_drop_high": rounded(test.high if tested else None, 3),
        "search_accuracy": rounded(record.metrics.get("accuracy"), 3),
        "search_accuracy_drop": rounded(search.estimate if search else None, 3),
        "search_accuracy_bound": rounded(search.bound if search else None, 3),
        "search_examples": search.examples if search and search.examples else None,  # fewer than the split: stopped early
        "confirmed": None if allowed is None or not tested else ("beyond the limit" if test.beyond(allowed) else "yes"),
        "latency_ms": rounded(metric(record, "latency_ms"), 3),
        "latency_ratio": rounded(OBJECTIVES["latency"].value(record, references, final=True), 4),
        "latency_ratio_low": rounded(metric(record, "latency_ratio_low"), 4),
        "latency_ratio_high": rounded(metric(record, "latency_ratio_high"), 4),
        "speedup_over_bar": rounded(over[0], 3),
        "speedup_over_bar_low": rounded(over[1], 3),
        "speedup_over_bar_high": rounded(over[2], 3),
        "size_mb": round(record.metrics["size_bytes"] / 1e6, 3),
        "size_ratio": round(OBJECTIVES["size"].value(record, references), 4),
        "config": describe(record.config, pipeline),
        "artifact": record.artifact or "",
    }


def _final(record: Record, name: str) -> float | None:
    return record.final.get(name, record.metrics.get(name))


def headline(
    references: References, baselines: Sequence[Record], front: Sequence[Record], max_drop: float | None, validated: Sequence[Record] = ()
) -> str | None:
    """One sentence: the fastest baseline and the fastest SimQ model within the accuracy limit, and
    how they compare (None without latency ratios). Which models are within the limit is decided
    as the published front was: on the search's split (validation), by the paired upper bound at
    the run's confidence; the test split only confirms. Latencies are the final pass's. Where no
    published model is within the limit, the `validated` candidates say whether some were, but
    none faster than FP32 (nothing slower is published).
    """
    what = "FP32" if references.accuracy.id == references.fp32.id else "the original"
    within = lambda r: _within(r, references, max_drop)  # noqa: E731
    ratio = lambda r: _final(r, "latency_ratio")  # noqa: E731
    ours = [r for r in front if r.kind == "candidate" and within(r) and ratio(r) is not None]
    base = bar(references, baselines, max_drop)
    if base is None:
        return None
    name = "FP32" if base is references.fp32 else str(base.config["baseline"])
    if max_drop is None or references.accuracy.metrics.get("accuracy") is None:
        limit = "of all"
    else:
        limit = f"within {max_drop:g} point{'s' if max_drop != 1 else ''} of {what}"
    # A faster baseline that the bound rejects while its estimate is within the limit is what a
    # user would call within it: the headline names it too, never only a weaker bar.
    near = [
        r for r in baselines if ratio(r) is not None and ratio(r) < ratio(base) and r is not base
        and max_drop is not None and (d := accuracy_drop(r, references)) is not None and d.estimate <= max_drop
    ]  # fmt: skip
    if not ours:
        slower = [r for r in validated if r.kind == "candidate" and r.status == "ok" and within(r) and ratio(r) is not None]
        why = (
            f"{len(slower)} candidate{'s' if len(slower) != 1 else ''} {'were' if len(slower) != 1 else 'was'} {limit} but none ran faster than FP32 "
            f"(the fastest at {min(ratio(r) for r in slower):.2f}x), and no slower model is published"
            if slower else f"no SimQ model on the front is {limit}"
        )  # fmt: skip
        return f"Best baseline {limit}: {name} at {ratio(base):.2f}x FP32; {why}."
    best = min(ours, key=ratio)
    sentence = (
        f"Best baseline {limit}: {name} at {ratio(base):.2f}x FP32. Fastest SimQ model {limit}: #{best.id} at "
        f"{ratio(best):.2f}x FP32, {_versus(base, best, base is not references.fp32)}."
    )
    if near:
        other = min(near, key=ratio)
        d = accuracy_drop(other, references)
        sentence += (
            f" Against {other.config['baseline']} ({ratio(other):.2f}x FP32, drop {d.estimate:.2f} on validation but "
            f"{d.bound:.2f} at its {d.confidence:.0%} bound): {_versus(other, best, True)}."
        )
    return sentence


def _within(record: Record, references: References, max_drop: float | None) -> bool:
    """Whether `record` is within the accuracy limit, judged as the published front was (the
    paired bound on the search's split); every model is when there is no limit."""
    if max_drop is None or record.id == references.accuracy.id:
        return True
    drop = accuracy_drop(record, references)
    return drop is not None and drop.within(max_drop)


def bar(references: References, baselines: Sequence[Record], max_drop: float | None) -> Record | None:
    """What a run's speed-ups are against: the fastest of FP32 and the baselines within the
    accuracy limit (None without latency ratios)."""
    pool = [r for r in [references.fp32, *baselines] if _within(r, references, max_drop) and _final(r, "latency_ratio") is not None]
    return min(pool, key=lambda r: _final(r, "latency_ratio")) if pool else None


def speedup(base: Record, model: Record) -> tuple[float, float | None, float | None]:
    """How many times faster `model` ran than `base` in the final pass (their ratios to FP32
    divided, so FP32's own latency divides out), with the two intervals combined at their worst
    (None without them)."""
    bounds = [_final(r, f"latency_ratio_{side}") for r in (base, model) for side in ("low", "high")]
    times = _final(base, "latency_ratio") / _final(model, "latency_ratio")
    return (times, None, None) if None in bounds else (times, bounds[0] / bounds[3], bounds[1] / bounds[2])


def _versus(base: Record, best: Record, with_interval: bool) -> str:
    """How much faster (or slower, naming `base`: the sentence's last figure is a ratio to FP32)
    `best` is than `base` in the final pass, with its interval (`speedup`)."""
    times, low, high = speedup(base, best)
    verdict = f"{times:.2f}x faster" if times >= 1 else f"{1 / times:.2f}x slower than {base.config.get('baseline', 'FP32')}"
    if low is not None and with_interval:
        verdict += f" ({low:.2f}–{high:.2f}x)" if times >= 1 else f" ({1 / high:.2f}–{1 / low:.2f}x)"
    return verdict


#: The speed-up column's header, before the bar's name (`display_table`).
SPEEDUP_HEADER = "× faster than "


def display_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The run's table as people read it (columns, rows of text): score with its paired drop and
    95 % interval, latency with its interval, the speed-up over the run's bar with its interval
    (where summary.json has one: runs before it did not), size, what each model is. `simq compile`
    prints it at the end of a run and `simq show` from ``summary.json``."""
    score = summary["score"]
    over = summary.get("bar") and any(row.get("speedup_over_bar") is not None for row in summary["rows"])
    columns = ["id", score, "Δ (95 % CI)", "ms", "× FP32 (95 % CI)", *([SPEEDUP_HEADER + summary["bar"]] if over else []), "MB", "× size", "model"]
    rows = []
    for row in summary["rows"]:
        drop, low, high = row.get("accuracy_drop"), row.get("accuracy_drop_low"), row.get("accuracy_drop_high")
        delta = "" if drop is None or row["kind"] == "reference" else f"{-drop:+.2f}" + (f" ({-high:+.2f}, {-low:+.2f})" if low is not None else "")
        if row.get("confirmed") == "beyond the limit":
            delta += " beyond"
        ratio, rlow, rhigh = row.get("latency_ratio"), row.get("latency_ratio_low"), row.get("latency_ratio_high")
        latency = "" if ratio is None else f"{ratio:.3f}" + (f" ({rlow:.3f}–{rhigh:.3f})" if rlow is not None and row["kind"] != "reference" else "")
        times, tlow, thigh = row.get("speedup_over_bar"), row.get("speedup_over_bar_low"), row.get("speedup_over_bar_high")
        faster = "" if times is None else f"{times:.2f}" + (f" ({tlow:.2f}–{thigh:.2f})" if tlow is not None else "")
        what = row.get("baseline") or ("FP32" if row["kind"] == "reference" else row["config"])
        rows.append([
            str(row["id"]), _number(row.get("accuracy"), 2), delta, _number(row.get("latency_ms"), 2), latency,
            *([faster] if over else []), _number(row.get("size_mb"), 1), _number(row.get("size_ratio"), 2), what,
        ])  # fmt: skip
    return columns, rows


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _template() -> jinja2.Template:
    environment = jinja2.Environment(loader=jinja2.PackageLoader("simq.search", "templates"), autoescape=True)
    return environment.get_template("report.html.j2")


def _settings_text(settings: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "the artifact's own runtime settings"


def write_report(
    out: Path, store: Store, options, job, references: References, baselines: list[Record], front: list[Record], goal,
    reference_note: str | None = None, timed: int = 0,
) -> tuple[Path, dict[str, Any]]:
    """Write ``pareto.csv``, ``summary.json`` and ``report.html``; returns the report's path and
    the summary (what `simq show` reads, and `display_table` lays out). `timed`: how many models
    (FP32 aside) the final pass re-timed to choose the front among."""
    pipeline = job.pipeline
    reference, anchor = references.fp32, references.accuracy
    allowed = options.max_accuracy_drop
    base = bar(references, baselines, allowed)
    rows = sorted((_row(r, references, pipeline, allowed, base) for r in front), key=lambda row: row["latency_ratio"] or 0.0)
    with (out / "pareto.csv.partial").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "pareto.csv.partial").replace(out / "pareto.csv")

    records = store.records()
    objectives = options.chosen_objectives()
    span = options.max_accuracy_drop if options.max_accuracy_drop is not None else DEFAULT_DROP_SPAN
    curve = hypervolume_curve(records, reference, objectives, span, anchor)
    accuracy_name = job.evaluator.name if job.evaluator else "accuracy"
    plots = pareto_plots(records, references, baselines, front, objectives, curve, accuracy_name) if front else []
    table_rows = (
        [_row(reference, references, pipeline, allowed, base) | {"config": "FP32 reference"}]
        + [_row(b, references, pipeline, allowed, base) for b in baselines]
        + [row for row in rows if row["id"] != reference.id]
    )
    failed = [r for r in records if r.status != "ok"]
    point = reference_point(objectives, span)
    settings = [
        f"objectives {', '.join(options.objectives)}", f"algorithm {options.algorithm}", f"seed {options.seed}",
        f"{len([r for r in records if r.kind == 'candidate'])} candidates validated (population {options.population})",
        f"latency {options.latency}", f"{accuracy_name} by {type(job.evaluator).__name__ if job.evaluator else 'none'}",
    ]  # fmt: skip
    if options.max_accuracy_drop is not None:
        what = "FP32" if anchor.id == reference.id else "the original"
        settings.append(
            f"at most {options.max_accuracy_drop:g} points below {what} at {options.confidence:.0%} confidence, paired on the same examples"
        )
        stopped = [r for r in records if r.kind == "candidate" and "scored_examples" in r.metrics]
        accepted = sum(1 for r in stopped if r.metrics.get("accepted_early"))
        if options.early_rejection:
            settings.append(f"{len(stopped) - accepted} candidates rejected early (their scoring stopped once past the limit at {EarlyStopping.confidence:.1%} confidence)")
        if options.early_acceptance or accepted:
            settings.append(f"{accepted} candidates accepted early (their scoring stopped once inside the limit at {EarlyStopping.confidence:.1%} confidence)")
    if options.max_latency_ms is not None:
        settings.append(f"at most {options.max_latency_ms} ms")
    published = sum(r.kind != "reference" for r in front)
    if timed > published:
        settings.append(f"{timed} models at or near the search's front re-timed in the final pass, the {published} published chosen among them on those timings")
    summary = headline(references, baselines, front, options.max_accuracy_drop, records)
    notes = [*job.notes, *([reference_note] if reference_note else [])]
    run = {
        "model": job.name, "target": job.target.name, "fingerprint": job.target.fingerprint().key(),
        "data": job.data, "score": accuracy_name, "headline": summary, "settings": settings, "notes": notes,
        "bar": None if base is None else ("FP32" if base.id == reference.id else base.config.get("baseline")),
        "accuracy_reference": {"id": anchor.id, "name": "FP32" if anchor.id == reference.id else anchor.config.get("baseline"), "accuracy": anchor.metrics.get("accuracy")},
        "timing": job.target.timing_settings(), "rows": table_rows,
    }  # fmt: skip
    (out / "summary.json.partial").write_text(json.dumps(run, indent=1, default=str))
    (out / "summary.json.partial").replace(out / SUMMARY_FILE)
    page = _template().render(
        run, objectives=options.objectives, point=[f"{v:g}" for v in point], hypervolume=curve[-1] if curve else 0.0,
        timing=_settings_text(job.target.timing_settings()), columns=list(table_rows[0]) if table_rows else [],
        unconfirmed=[row["id"] for row in rows if row["confirmed"] == "beyond the limit"], plots=plots, failed=failed,
    )  # fmt: skip
    report = out / "report.html"
    (out / "report.html.partial").write_text(page)
    (out / "report.html.partial").replace(report)
    return report, run
