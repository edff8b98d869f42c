"""``crystaloop campaign run CONFIG [--store URL] [--resume]``: run a closed-loop campaign."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from crystaloop.commands.common import Column, FormatOption, Output, OutputFormat, console, exit_on_error, fail

__all__ = ["campaign_app", "arm_rows", "print_reports", "report_folder"]

campaign_app = typer.Typer(help="Closed-loop campaigns: generate, guard, select, measure, learn.", no_args_is_help=True)
logger = logging.getLogger(__name__)


@campaign_app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Campaign YAML (see examples/).")],
    store: Annotated[Optional[str], typer.Option("--store", help="SQLAlchemy URL of the store; default: the config's store_url, then $CRYSTALOOP_DB_URL, then sqlite:///crystaloop.db.")] = None,  # noqa: UP045
    resume: Annotated[bool, typer.Option("--resume", help="Continue a campaign that already has iterations in the store.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    figures: Annotated[Optional[Path], typer.Option("--figures", help="Folder for the discovery curve, Pareto plot and reports.json; default: <campaign>-report/ beside a SQLite store file, else runs/<campaign>/.")] = None,  # noqa: UP045
    fmt: FormatOption = OutputFormat.TABLE,
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
    with Output(fmt, csv=False, command="campaign run") as out:
        with exit_on_error():
            campaign = load_campaign_config(config)
            with CandidateStore(store or campaign.store_url) as db:
                started = campaign.name in db.campaigns() and bool(db.iterations(campaign.name))
                if started and not resume:
                    raise fail(f"campaign {campaign.name!r} already has iterations in {redact_url(db.url)}; pass --resume to continue it")
                reports = run_campaign(build_components(campaign), db, campaign)
                evaluated = iteration_candidates(db, campaign.name, None, [CandidateStatus.EVALUATED])
                folder = figures or report_folder(db.url, campaign.name)
        print_reports(out, campaign, reports)
        print_stability(out, evaluated)
        try:
            written = write_figures(reports, campaign, evaluated, folder)
            summary = folder / "reports.json"
            summary.write_text("[\n" + ",\n".join(r.model_dump_json() for r in reports) + "\n]\n")
        except OSError as exc:
            raise fail(f"cannot write the campaign's figures to {folder}: {exc}") from None
        for path in [*written, summary]:
            console.print(f"wrote {path}")
        out.add(written=[str(p) for p in [*written, summary]])


def report_folder(store_url: str, campaign: str) -> Path:
    """Where ``campaign run`` writes figures by default: ``<campaign>-report/`` beside a SQLite
    store file, else ``runs/<campaign>/`` under the working directory."""
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().resolve().parent / f"{campaign}-report"
    return Path("runs") / campaign


def _diversity(row: dict) -> str:
    diversity = row.get("diversity") or {}
    text = f"distinct {diversity.get('distinct_fraction', float('nan')):.2f}, Vendi {diversity.get('vendi', float('nan')):.1f}"
    collapse = row.get("collapse") or {}
    if collapse.get("collapsed"):
        text += f" collapsed → level {collapse['next']['level']}"
    return text


ITERATION_COLUMNS = (
    Column("iteration", "iter", justify="right"),
    Column("generated", "gen", justify="right"),
    Column("rejected", "rej", justify="right", priority=3),
    Column("evaluated", "meas", justify="right"),
    Column("failed", "fail", justify="right", priority=2),
    Column("verified_hits", "hits", len, justify="right"),
    Column("predicted_hits", "pred", len, justify="right", priority=4),
    Column("sun", "S.U.N.", lambda sun: f"{sun['sun']} / {sun['sun_strict']}"),
    Column("best_measured", "best measured", lambda best: ", ".join(f"{k}={v:.3g}" for k, v in best.items())),
    Column("diversity", "diversity", _diversity, priority=1, from_row=True),
)
"""One row per campaign iteration (an :class:`~crystaloop.loop.report.IterationReport` as JSON)."""

ARM_COLUMNS = (
    Column("iteration", "iter", justify="right"),
    Column("arm", "arm"),
    Column("allocation", "allocation", priority=1),
    Column("share", "share", "{:.2f}", justify="right"),
    Column("generated", "gen", justify="right"),
    Column("oracle_calls", "calls", justify="right"),
    Column("hits", "hits", justify="right"),
)
"""One row per iteration and arm of a composite generator (from the report's ``arms``)."""


def arm_rows(reports) -> list[dict]:  # noqa: ANN001 - list[IterationReport]
    """Per iteration and arm: the allocation kind, the share it generated with, the candidates it
    generated and the oracle calls and verified hits its candidates got; none without a composite generator."""
    rows = []
    for r in reports:
        if r.arms is None:
            continue
        for arm, share in r.arms.shares.items():
            outcome = r.arms.outcomes.get(arm)
            rows.append({"iteration": r.iteration, "arm": arm, "allocation": r.arms.kind, "share": share,
                         "generated": r.arms.generated.get(arm, 0), "oracle_calls": outcome.oracle_calls if outcome else 0,
                         "hits": outcome.hits if outcome else 0})
    return rows


STABILITY_COLUMNS = (
    Column("id", "candidate", "{:.12}"),
    Column("formula", "formula"),
    Column("property", "measured", lambda p: "e_above_hull" if p == "e_above_hull" else "formation vs elements (no verdict)", priority=2),
    Column("value", "eV/atom", justify="right"),
    Column("coverage", "hull coverage", priority=1),
    Column("decomposition", "decomposes into"),
)
"""One row per measured candidate: its hull value and what the hull rests on."""


def print_reports(out: Output, campaign, reports) -> None:  # noqa: ANN001 - CampaignConfig, list[IterationReport]
    """One table row per iteration: generated, rejected, evaluated, hits, S.U.N. candidates (at the
    stable / strict e_above_hull thresholds), best measured values; with a composite generator, one
    row per iteration and arm (:func:`arm_rows`); then the campaign's S.U.N. line."""
    from crystaloop.loop.sun import campaign_sun

    rows = [r.model_dump(mode="json") | {"rejected": sum(r.rejected_by_reason.values())} for r in reports]
    out.table("iterations", ITERATION_COLUMNS, rows,
              title=f"campaign {campaign.name} ({campaign.config_hash()}): gen = generated, rej = rejected by the guards, "
                    "meas = measured, hits = oracle-verified, pred = predicted by the surrogate only")
    arms = arm_rows(reports)
    if arms:
        out.table("arms", ARM_COLUMNS, arms, title="composite generator: share each arm generated with, "
                                                   "gen = its candidates, calls = oracle calls on them, hits = oracle-verified")
    total = campaign_sun(r.sun for r in reports)
    out.add(campaign=campaign.name, config_hash=campaign.config_hash())
    if total is not None:
        console.print(f"campaign {campaign.name}: {total.describe()}", highlight=False)
        out.add(sun=total.model_dump(mode="json"))
    for r in reports:
        if r.collapse is not None and r.collapse.collapsed:
            console.print(f"iteration {r.iteration}: collapse ({'; '.join(r.collapse.reasons)}); next: {'; '.join(r.collapse.next.describe())}")


def print_stability(out: Output, candidates) -> None:  # noqa: ANN001 - list[Candidate]
    """One row per measured candidate: its hull value (eV/atom), the coverage of the hull it
    rests on and the phases it decomposes into."""
    from crystaloop.loop.report import stability_basis

    rows = [{"id": c.id, "formula": c.crystal.reduced_formula, **basis} for c in candidates if (basis := stability_basis(c)) is not None]
    if rows or out.machine:
        out.table("stability", STABILITY_COLUMNS, rows, title="stability of the measured candidates")
