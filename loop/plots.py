"""Campaign figures as PNG bytes (matplotlib's Agg canvas, no pyplot state): the discovery curve
and, for multi-objective campaigns, the Pareto plot of the first two objectives.

* :func:`discovery_curve_png` — cumulative oracle-verified hits against cumulative oracle calls,
  one point per iteration; predicted-only hits (an objective beyond the oracle, e.g. a band gap
  with an MLIP oracle) as a separate dashed line, never added to the verified count.
* :func:`pareto_png` — the evaluated candidates' values of the first two objectives with their
  non-dominated front; a value is the oracle's where it measured one, else the surrogate's
  prediction, and an axis says "predicted" when any of its values is one.
* :func:`top_structures` — pictures of the best evaluated candidates' unit cells
  (:mod:`crystaloop.data.pictures`), ranked by the first objective as the top-candidates table is,
  each captioned with its rank and measured values; :func:`top_structures_markdown` lists them
  with their images (files beside the markdown, or data URIs in a Prefect artifact).
* :func:`write_figures` — all of them as files in a folder (what ``crystaloop campaign run`` writes).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystaloop.data.pictures import StructurePicture, render_structure
from crystaloop.data.records import Candidate, CandidateStatus
from crystaloop.loop.config import CampaignConfig, Objective
from crystaloop.loop.report import IterationReport, measured_values, objective_rank_key

__all__ = [
    "discovery_curve_png",
    "pareto_mask",
    "pareto_png",
    "objective_values",
    "campaign_figures",
    "TopStructure",
    "top_structures",
    "top_structures_markdown",
    "write_figures",
    "TOP_STRUCTURES",
]

TOP_STRUCTURES = 3
"""Unit-cell pictures of the best evaluated candidates in a campaign's report and artifacts."""


def _figure():  # noqa: ANN202 - a matplotlib Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(6.4, 4.0), dpi=100)


def _png(figure) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # a bare Figure draws with the Agg canvas
    return buffer.getvalue()


def discovery_curve_png(reports: Sequence[IterationReport], title: str) -> bytes:
    """Cumulative verified hits (and predicted-only hits, dashed, when any) against cumulative
    oracle calls, one point per iteration annotated with its index."""
    calls = np.concatenate([[0], np.cumsum([r.oracle_calls for r in reports])])
    hits = np.concatenate([[0], np.cumsum([len(r.verified_hits) for r in reports])])
    predicted = np.concatenate([[0], np.cumsum([len(r.predicted_hits) for r in reports])])
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(calls, hits, marker="o", label="verified hits (oracle)")
    if predicted[-1] > 0:
        ax.plot(calls, predicted, marker="s", linestyle="--", color="C1", label="predicted-only hits (surrogate)")
        ax.legend()
    for r, x, y in zip(reports, calls[1:], hits[1:], strict=True):
        ax.annotate(str(r.iteration), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.set_ylim(0, 1.1 * max(1, hits[-1], predicted[-1]))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("oracle calls (cumulative)")
    ax.set_ylabel("hits (cumulative)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """(n,) bool: the non-dominated rows of ``points`` (n, k), every column minimised."""
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(points <= points[i], axis=1) & np.any(points < points[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def objective_values(candidates: Sequence[Candidate], objectives: Sequence[Objective]) -> tuple[np.ndarray, np.ndarray]:
    """``(values, predicted)``, both (n, m): the oracle's ``ok`` value of each objective, else the
    surrogate's predicted mean (``predicted`` True there), NaN when neither exists."""
    values = np.full((len(candidates), len(objectives)), np.nan)
    predicted = np.zeros_like(values, dtype=bool)
    for i, candidate in enumerate(candidates):
        measured = {m.property: m.value for m in candidate.measurements if m.status == "ok" and m.value is not None}
        for j, objective in enumerate(objectives):
            if objective.property in measured:
                values[i, j] = measured[objective.property]
            elif objective.property in candidate.predictions:
                values[i, j] = candidate.predictions[objective.property][0]
                predicted[i, j] = True
    return values, predicted


def _cost(column: np.ndarray, objective: Objective) -> np.ndarray:
    if objective.goal == "maximise":
        return -column
    if objective.goal == "minimise":
        return column
    low, high = objective.window or (0.0, 0.0)
    return np.maximum(low - column, 0.0) + np.maximum(column - high, 0.0)


def _label(objective: Objective, predicted: bool) -> str:
    text = f"{objective.property} ({objective.units})" if objective.units else objective.property
    return text + (", predicted where not measured" if predicted else "")


def pareto_png(values: np.ndarray, config: CampaignConfig, predicted: np.ndarray | None = None) -> bytes | None:
    """The first two objectives' ``values`` (n, ≥2; NaN rows dropped) with their Pareto front
    (distance outside a target window counts as the cost), or ``None`` for a single-objective
    campaign or no complete row. ``predicted`` (n, ≥2) marks surrogate values."""
    if len(config.objectives) < 2:
        return None
    first, second = config.objectives[:2]
    values = np.asarray(values, dtype=np.float64)[:, :2]
    complete = np.all(np.isfinite(values), axis=1)
    if not complete.any():
        return None
    flags = np.zeros_like(values, dtype=bool) if predicted is None else np.asarray(predicted)[:, :2]
    values, flags = values[complete], flags[complete]
    front = pareto_mask(np.stack([_cost(values[:, 0], first), _cost(values[:, 1], second)], axis=1))
    figure = _figure()
    ax = figure.add_subplot(1, 1, 1)
    ax.scatter(values[~front, 0], values[~front, 1], s=18, alpha=0.5, label="evaluated")
    order = np.argsort(values[front, 0])
    ax.plot(values[front, 0][order], values[front, 1][order], marker="o", color="C3", label="Pareto front")
    for j, objective in enumerate((first, second)):
        if objective.window is not None:
            (ax.axvspan if j == 0 else ax.axhspan)(*objective.window, color="C2", alpha=0.1)
    ax.set_xlabel(_label(first, bool(flags[:, 0].any())))
    ax.set_ylabel(_label(second, bool(flags[:, 1].any())))
    ax.set_title(f"{config.name}: evaluated candidates")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def campaign_figures(reports: Sequence[IterationReport], config: CampaignConfig, evaluated: Sequence[Candidate]) -> dict[str, bytes]:
    """PNG bytes by name: ``discovery-curve`` and, for multi-objective campaigns with complete
    rows, ``pareto`` (from the ``evaluated`` candidates)."""
    figures = {"discovery-curve": discovery_curve_png(reports, f"{config.name}: discovery curve")}
    values, predicted = objective_values(evaluated, config.objectives)
    pareto = pareto_png(values, config, predicted)
    if pareto is not None:
        figures["pareto"] = pareto
    return figures


@dataclass(frozen=True)
class TopStructure:
    """One of the best evaluated candidates with the picture of its unit cell."""

    rank: int
    candidate: Candidate
    picture: StructurePicture
    caption: str


def _caption(rank: int, candidate: Candidate, objective: Objective) -> str:
    """``#1 · heat_ref = -0.52 eV · e_above_hull 0.031 eV/atom`` (measured values; a
    prediction only when the oracle did not measure the objective)."""
    measured = measured_values(candidate)
    parts = [f"#{rank}"]
    units = f" {objective.units}" if objective.units else ""
    value = measured.get(objective.property)
    predicted = candidate.predictions.get(objective.property)
    if value is not None:
        parts.append(f"{objective.property} = {value:.3g}{units}")
    elif predicted is not None:
        parts.append(f"{objective.property} ≈ {predicted[0]:.3g} ± {predicted[1]:.2g}{units} (predicted)")
    hull = measured.get("e_above_hull")
    if hull is not None and objective.property != "e_above_hull":
        parts.append(f"e_above_hull {hull:.3f} eV/atom")
    return " · ".join(parts)


def top_structures(evaluated: Sequence[Candidate], config: CampaignConfig, k: int = TOP_STRUCTURES,
                   *, size: tuple[int, int] = (420, 380)) -> list[TopStructure]:
    """Pictures (``size`` pixels) of the ``k`` best evaluated candidates, best first: measured
    on the first objective before predicted-only, then by its value (as the top-candidates table)."""
    objective = config.objectives[0]
    pool = sorted((c for c in evaluated if c.status == CandidateStatus.EVALUATED),
                  key=lambda c: (*objective_rank_key(c, objective), c.id))
    entries = []
    for rank, candidate in enumerate(pool[:k], start=1):
        caption = _caption(rank, candidate, objective)
        entries.append(TopStructure(rank, candidate, render_structure(candidate.crystal, caption=caption, size=size), caption))
    return entries


def top_structures_markdown(entries: Sequence[TopStructure], sources: Sequence[str], title: str) -> str:
    """Markdown: a table of ``entries`` (rank, formula, space group, values, id) and their
    pictures side by side, the image of entry ``i`` at ``sources[i]`` (a file name or data URI)."""
    if len(sources) != len(entries):
        raise ValueError(f"{len(entries)} structures but {len(sources)} image sources")
    lines = [f"# {title}", "", "| rank | formula | space group | values | id |", "|---|---|---|---|---|"]
    for entry in entries:
        values = entry.caption.partition(" · ")[2] or "—"
        lines.append(f"| {entry.rank} | {entry.picture.formula} | {entry.picture.space_group} | {values} | `{entry.candidate.id[:12]}` |")
    lines += ["", " ".join(f"![#{e.rank} {e.picture.formula} {e.picture.space_group}]({src})" for e, src in zip(entries, sources, strict=True))]
    return "\n".join(lines)


def write_figures(reports: Sequence[IterationReport], config: CampaignConfig, evaluated: Sequence[Candidate], folder: Path,
                  pictures: int = TOP_STRUCTURES) -> list[Path]:
    """Write :func:`campaign_figures` as ``<name>.png`` into ``folder``, and the unit cells of the
    ``pictures`` best evaluated candidates as ``top-structure-<rank>.png`` listed in
    ``top-structures.md`` (none when nothing was evaluated); returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, png in campaign_figures(reports, config, evaluated).items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        written.append(path)
    entries = top_structures(evaluated, config, pictures)
    if entries:
        names = [f"top-structure-{entry.rank}.png" for entry in entries]
        for entry, name in zip(entries, names, strict=True):
            (folder / name).write_bytes(entry.picture.png)
            written.append(folder / name)
        summary = folder / "top-structures.md"
        summary.write_text(top_structures_markdown(entries, names, f"{config.name}: best evaluated structures") + "\n")
        written.append(summary)
    return written
