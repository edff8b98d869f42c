"""Campaign figures as PNG bytes (matplotlib, Agg backend): the discovery curve and, for
multi-objective campaigns, the measured Pareto plot."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.report import IterationReport

__all__ = ["discovery_curve_png", "pareto_png", "pareto_mask"]


def _figure():  # noqa: ANN202 - a matplotlib Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(6.4, 4.0), dpi=100)


def _png(figure) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # Figure() without pyplot draws with the Agg canvas
    return buffer.getvalue()


def discovery_curve_png(reports: Sequence[IterationReport], title: str) -> bytes:
    """Cumulative oracle-verified hits against cumulative oracle calls, one point per iteration."""
    calls = np.cumsum([r.oracle_calls for r in reports])
    hits = np.cumsum([len(r.verified_hits) for r in reports])
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(np.concatenate([[0], calls]), np.concatenate([[0], hits]), marker="o")
    for r, x, y in zip(reports, calls, hits, strict=True):
        ax.annotate(str(r.iteration), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("oracle calls (cumulative)")
    ax.set_ylabel("verified hits (cumulative)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``points`` (every column minimised)."""
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(points <= points[i], axis=1) & np.any(points < points[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def pareto_png(values: np.ndarray, config: CampaignConfig) -> bytes | None:
    """Measured values of the first two objectives (``values``: (n, 2), NaN where missing) with
    their Pareto front, or ``None`` for a single-objective campaign or no complete row."""
    if len(config.objectives) < 2:
        return None
    first, second = config.objectives[:2]
    values = values[np.all(np.isfinite(values), axis=1)]
    if not len(values):
        return None

    def cost(column: np.ndarray, objective) -> np.ndarray:  # noqa: ANN001
        if objective.goal == "maximise":
            return -column
        if objective.goal == "minimise":
            return column
        low, high = objective.window
        return np.abs(column - 0.5 * (low + high))

    front = pareto_mask(np.stack([cost(values[:, 0], first), cost(values[:, 1], second)], axis=1))
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    ax.scatter(values[~front, 0], values[~front, 1], s=18, alpha=0.5, label="measured")
    order = np.argsort(values[front, 0])
    ax.plot(values[front, 0][order], values[front, 1][order], marker="o", color="C3", label="Pareto front")
    ax.set_xlabel(f"{first.property} ({first.units})" if first.units else first.property)
    ax.set_ylabel(f"{second.property} ({second.units})" if second.units else second.property)
    ax.set_title(f"{config.name}: measured objectives")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)
