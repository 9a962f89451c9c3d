"""The report's plots: each pair of objectives, and the hypervolume over the search."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

from simq.search._objectives import Objective, References, normalised_values
from simq.search._store import Record

__all__ = ["pareto_plots"]


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def pareto_plots(
    records: Sequence[Record], references: References, baselines: Sequence[Record], front: Sequence[Record],
    objectives: Sequence[Objective], curve: Sequence[float], accuracy_name: str,
) -> list[tuple[str, str]]:
    """(title, base64 PNG) per pair of objectives (candidates, the published set, baselines, FP32),
    then the hypervolume over validated candidates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    ok = [r for r in records if r.status == "ok" and r.kind == "candidate"]
    labels = {o.name: o.label.format(score=accuracy_name) for o in objectives}
    names = [o.name for o in objectives]
    pairs = [(names[0], names[1])] + ([(names[2], names[1]), (names[0], names[2])] if len(names) == 3 else [])
    fp32 = normalised_values(references.fp32, references, objectives, final=True)
    for y_name, x_name in pairs:
        x, y = names.index(x_name), names.index(y_name)
        fig, ax = plt.subplots(figsize=(6, 4.2))
        points = [v for v in (normalised_values(r, references, objectives) for r in ok) if v is not None]
        if points:
            pts = np.array(points)
            ax.scatter(pts[:, x], pts[:, y], c="0.75", s=14, label="validated candidates")
        pts = np.array([v for v in (normalised_values(r, references, objectives, final=True) for r in front) if v is not None]).reshape(-1, len(names))
        ax.scatter(pts[:, x], pts[:, y], c="tab:blue", s=30, label="Pareto set (final measurement)")
        for b in baselines:
            v = normalised_values(b, references, objectives, final=True)
            if v is not None:
                ax.scatter(v[x], v[y], marker="s", s=50, label=b.config["baseline"])
        if fp32 is not None:
            ax.scatter([fp32[x]], [fp32[y]], marker="*", s=120, c="k", label="FP32")
        ax.set_xlabel(labels[x_name])
        ax.set_ylabel(labels[y_name])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        plots.append((f"{labels[y_name]} against {labels[x_name]}", _png(fig)))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(curve) + 1), curve, c="tab:blue")
    ax.set_xlabel("validated candidates")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    plots.append(("Hypervolume over validated candidates", _png(fig)))
    plt.close(fig)
    return plots


