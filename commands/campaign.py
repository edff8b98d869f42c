"""``crystaloop campaign run CONFIG [--store URL] [--resume]``: run a closed-loop campaign."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from crystaloop.commands.common import console, exit_on_error, fail

__all__ = ["campaign_app", "print_reports", "report_folder"]

campaign_app = typer.Typer(help="Closed-loop campaigns: generate, guard, select, measure, learn.", no_args_is_help=True)
logger = logging.getLogger(__name__)


@campaign_app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Campaign YAML (see examples/).")],
    store: Annotated[Optional[str], typer.Option("--store", help="SQLAlchemy URL of the store; default: the config's store_url, then $CRYSTALOOP_DB_URL, then sqlite:///crystaloop.db.")] = None,  # noqa: UP045
    resume: Annotated[bool, typer.Option("--resume", help="Continue a campaign that already has iterations in the store.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    figures: Annotated[Optional[Path], typer.Option("--figures", help="Folder for the discovery curve, Pareto plot and reports.json; default: <campaign>-report/ beside a SQLite store file, else runs/<campaign>/.")] = None,  # noqa: UP045
) -> None:
    """Run the campaign's remaining iterations, one report line per iteration, then write the
    figures (discovery curve; Pareto plot for several objectives) and the reports as files."""
    import torch

    from crystaloop.data.records import CandidateStatus
    from crystaloop.data.store import CandidateStore, redact_url
    from crystaloop.loop.campaign import iteration_candidates, run_campaign
    from crystaloop.loop.components import build_components
    from crystaloop.loop.config import load_campaign_config
    from crystaloop.loop.plots import write_figures

    torch.set_num_threads(threads)
    with exit_on_error():
        campaign = load_campaign_config(config)
        with CandidateStore(store or campaign.store_url) as db:
            started = campaign.name in db.campaigns() and bool(db.iterations(campaign.name))
            if started and not resume:
                raise fail(f"campaign {campaign.name!r} already has iterations in {redact_url(db.url)}; pass --resume to continue it")
            reports = run_campaign(build_components(campaign), db, campaign)
            evaluated = iteration_candidates(db, campaign.name, None, [CandidateStatus.EVALUATED])
            folder = figures or report_folder(db.url, campaign.name)
    print_reports(campaign, reports)
    print_stability(evaluated)
    try:
        written = write_figures(reports, campaign, evaluated, folder)
        summary = folder / "reports.json"
        summary.write_text("[\n" + ",\n".join(r.model_dump_json() for r in reports) + "\n]\n")
    except OSError as exc:
        raise fail(f"cannot write the campaign's figures to {folder}: {exc}") from None
    for path in [*written, summary]:
        console.print(f"wrote {path}")


def report_folder(store_url: str, campaign: str) -> Path:
    """Where ``campaign run`` writes figures by default: ``<campaign>-report/`` beside a SQLite
    store file, else ``runs/<campaign>/`` under the working directory."""
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().resolve().parent / f"{campaign}-report"
    return Path("runs") / campaign


def print_reports(campaign, reports) -> None:  # noqa: ANN001 - CampaignConfig, list[IterationReport]
    """One table row per iteration: generated, rejected, evaluated, hits, S.U.N. candidates (at the
    stable / strict e_above_hull thresholds), best measured values; then the campaign's S.U.N. line."""
    from rich.table import Table

    from crystaloop.loop.sun import campaign_sun

    table = Table(title=f"campaign {campaign.name} ({campaign.config_hash()}): hits = oracle-verified, predicted = surrogate only")
    for column in ("iter", "gen", "rejected", "measured", "failed", "hits", "predicted", "S.U.N.", "best measured", "diversity"):
        table.add_column(column, overflow="fold")
    for r in reports:
        best = ", ".join(f"{k}={v:.3g}" for k, v in r.best_measured.items())
        diversity = f"distinct {r.diversity.get('distinct_fraction', float('nan')):.2f}, Vendi {r.diversity.get('vendi', float('nan')):.1f}"
        if r.collapse is not None and r.collapse.collapsed:
            diversity += f" [red]collapsed → level {r.collapse.next.level}[/]"
        table.add_row(
            str(r.iteration), str(r.generated), str(sum(r.rejected_by_reason.values())), str(r.evaluated), str(r.failed),
            str(len(r.verified_hits)), str(len(r.predicted_hits)), "—" if r.sun is None else f"{r.sun.sun} / {r.sun.sun_strict}", best, diversity,
        )
    console.print(table)
    total = campaign_sun(r.sun for r in reports)
    if total is not None:
        console.print(f"campaign {campaign.name}: {total.describe()}", highlight=False)
    for r in reports:
        if r.collapse is not None and r.collapse.collapsed:
            console.print(f"iteration {r.iteration}: collapse ({'; '.join(r.collapse.reasons)}); next: {'; '.join(r.collapse.next.describe())}")


def print_stability(candidates) -> None:  # noqa: ANN001 - list[Candidate]
    """One row per measured candidate: its hull value (eV/atom), the coverage of the hull it
    rests on and the phases it decomposes into."""
    from rich.table import Table

    from crystaloop.loop.report import stability_basis

    rows = [(c, stability_basis(c)) for c in candidates]
    rows = [(c, b) for c, b in rows if b is not None]
    if not rows:
        return
    table = Table("candidate", "formula", "measured (eV/atom)", "hull coverage", "decomposes into", title="stability of the measured candidates")
    for candidate, basis in rows:
        label = "e_above_hull" if basis["property"] == "e_above_hull" else "formation vs elements (no verdict)"
        table.add_row(candidate.id[:12], candidate.crystal.reduced_formula, f"{label} {basis['value']}", basis["coverage"], basis["decomposition"])
    console.print(table)
