"""Per-iteration Prefect artifacts: markdown summary, top-candidates table, discovery-curve and
Pareto PNGs, the unit-cell pictures of the best evaluated candidates, and a progress artifact for
long steps.

Keys are ``<campaign>-<what>`` (lowercased, dashes), so each run of the same campaign adds a new
version of the same artifact and the UI shows their history. The text and rows are built by plain
functions (:func:`summary_markdown`, :func:`top_candidate_rows`) that tests check without Prefect.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from pathlib import Path

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from crystaloop.data.records import Candidate, CandidateStatus
from crystaloop.flows.config import artifact_key
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.plots import campaign_figures, top_structures, top_structures_markdown
from crystaloop.loop.report import IterationReport, measured_values, objective_rank_key, stability_basis

__all__ = [
    "summary_markdown",
    "top_candidate_rows",
    "publish_iteration",
    "publish_figures",
    "Progress",
]

logger = logging.getLogger(__name__)

_RANKED = (CandidateStatus.EVALUATED, CandidateStatus.FAILED, CandidateStatus.SELECTED, CandidateStatus.SCORED)


def summary_markdown(report: IterationReport, config: CampaignConfig) -> str:
    """A markdown summary of one iteration's report."""
    rejected = ", ".join(f"{g}: {n}" for g, n in report.rejected_by_reason.items()) or "none"
    best = ", ".join(f"{k} = {v:.4g}" for k, v in report.best_measured.items()) or "nothing measured"
    lines = [
        f"# {config.name}: iteration {report.iteration}",
        "",
        f"config `{report.config_hash}` · strategy **{config.strategy.kind}** · {report.seconds:.1f} s"
        + (" · resumed" if report.resumed else ""),
        "",
        "| step | count |",
        "|---|---|",
        f"| generated | {report.generated} |",
        f"| duplicates skipped | {'—' if report.duplicates_skipped is None else report.duplicates_skipped} |",
        f"| rejected | {sum(report.rejected_by_reason.values())} ({rejected}) |",
        f"| scored, not picked | {report.scored} |",
        f"| oracle calls | {report.oracle_calls} ({report.evaluated} evaluated, {report.failed} failed) |",
        f"| verified hits | {len(report.verified_hits)} |",
        f"| predicted-only hits | {len(report.predicted_hits)} |",
        f"| S.U.N. | {'—' if report.sun is None else report.sun.describe()} |",
        "",
        f"Best measured: {best}.",
    ]
    if report.diversity:
        lines.append("Diversity: " + ", ".join(f"{k} = {v:.3g}" for k, v in report.diversity.items()) + ".")
    if report.predicted_hits:
        lines += ["", "Predicted-only hits (surrogate, not verified): " + ", ".join(h.formula for h in report.predicted_hits)]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def top_candidate_rows(candidates: Sequence[Candidate], config: CampaignConfig, k: int) -> list[dict[str, str]]:
    """Table rows of the ``k`` best candidates: measured before predicted-only, each ranked by
    the first objective; columns formula, status, predicted ± std and oracle value per
    objective, e_above_hull and guard verdicts."""
    objective = config.objectives[0]
    pool = [c for c in candidates if c.status in _RANKED]
    pool.sort(key=lambda c: (*objective_rank_key(c, objective), c.id))
    rows = []
    for c in pool[:k]:
        measured = measured_values(c)
        row = {"id": c.id[:12], "formula": c.crystal.reduced_formula, "status": c.status.value}
        for o in config.objectives:
            mean_std = c.predictions.get(o.property)
            row[f"{o.property} predicted"] = "" if mean_std is None else f"{mean_std[0]:.3g} ± {mean_std[1]:.2g}"
            row[f"{o.property} oracle"] = _fmt(measured.get(o.property))
        row["e_above_hull (eV/atom)"] = _fmt(measured.get("e_above_hull"), 3)
        basis = stability_basis(c)
        row["hull basis"] = "" if basis is None else f"{basis['coverage']}: {basis['decomposition']}"
        row["guards"] = "; ".join(f"{v.guard}: {'ok' if v.ok else 'fail ' + v.reason}" for v in c.verdicts)
        rows.append(row)
    return rows


def publish_iteration(report: IterationReport, config: CampaignConfig, candidates: Sequence[Candidate], top_k: int) -> None:
    """The iteration's markdown summary and top-candidates table artifacts."""
    create_markdown_artifact(
        markdown=summary_markdown(report, config),
        key=artifact_key(config.name, "summary"),
        description=f"{config.name} iteration {report.iteration}",
    )
    create_table_artifact(
        table=top_candidate_rows(candidates, config, top_k),
        key=artifact_key(config.name, "top-candidates"),
        description=f"{config.name} iteration {report.iteration}: top {top_k} candidates",
    )


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _image_markdown(png: bytes, path: Path, caption: str) -> str:
    return f"![{caption}]({_data_uri(png)})\n\n{caption} (file: `{path}`)"


def publish_figures(reports: Sequence[IterationReport], config: CampaignConfig, candidates: Sequence[Candidate], folder: Path) -> list[Path]:
    """Write the discovery curve (and the Pareto plot of multi-objective campaigns) as PNGs in
    ``folder`` and publish each as a markdown artifact embedding the image; then the same for
    the unit cells of the best evaluated ``candidates`` (one ``top-structures`` artifact with a
    table and the pictures, files ``top-structure-<rank>-iter<i>.png``); returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    last = reports[-1].iteration
    written = []
    for name, png in campaign_figures(reports, config, candidates).items():
        path = folder / f"{name}-iter{last}.png"
        path.write_bytes(png)
        written.append(path)
        create_markdown_artifact(
            markdown=_image_markdown(png, path, f"{config.name} {name} after iteration {last}"),
            key=artifact_key(config.name, name),
            description=f"{config.name} {name} after iteration {last}",
        )
    entries = top_structures(candidates, config)
    if entries:
        paths = [folder / f"top-structure-{entry.rank}-iter{last}.png" for entry in entries]
        for entry, path in zip(entries, paths, strict=True):
            path.write_bytes(entry.picture.png)
        written += paths
        title = f"{config.name}: best evaluated structures after iteration {last}"
        create_markdown_artifact(
            markdown=top_structures_markdown(entries, [_data_uri(e.picture.png) for e in entries], title)
            + "\n\nfiles: " + ", ".join(f"`{p}`" for p in paths),
            key=artifact_key(config.name, "top-structures"),
            description=title,
        )
    return written


class Progress:
    """A progress artifact for a long step: ``Progress(total, description)``, then
    ``advance()`` once per finished unit (percent shown in the UI)."""

    def __init__(self, total: int, description: str) -> None:
        self.total = max(1, total)
        self.done = 0
        self.artifact_id = create_progress_artifact(progress=0.0, description=description)

    def advance(self, n: int = 1) -> float:
        """Count ``n`` more units done; returns the percentage now shown."""
        self.done = min(self.total, self.done + n)
        percent = 100.0 * self.done / self.total
        if self.artifact_id is not None:
            update_progress_artifact(artifact_id=self.artifact_id, progress=percent)
        return percent
