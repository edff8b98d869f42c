"""``crystaloop demo``: the shipped datasets in a fresh store, then a short real campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import Column, FormatOption, Output, OutputFormat, console, exit_on_error
from crystaloop.commands.data import print_import_report, run_import

__all__ = ["demo"]

_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "perovskite-water-splitting.yaml"


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's store.")] = Path("runs/demo"),
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="Rows per shipped file (all by default).")] = None,  # noqa: UP045
    campaign: Annotated[bool, typer.Option("--campaign/--no-campaign", help="Then run a short real 2-iteration campaign through Prefect.")] = True,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Import the shipped datasets into a fresh SQLite store, summarise it, and run a short campaign."""
    from crystaloop.data.datasets import SHIPPED_DATASETS
    from crystaloop.data.store import CandidateStore

    with Output(fmt, csv=False, command="demo") as output:
        out.mkdir(parents=True, exist_ok=True)
        db_path = out / "store.db"
        for stale in out.glob("store.db*"):
            stale.unlink()
        url = f"sqlite:///{db_path}"
        with CandidateStore(url) as candidate_store:
            reports = [
                run_import(f"{name}/{split}", candidate_store, None, max_rows)
                for name, splits in SHIPPED_DATASETS.items()
                for split in splits
            ]
            for report in reports:
                print_import_report(report)
            summary = candidate_store.summary()
        _print_store_summary(output, summary)
        if campaign:
            _demo_campaign(output, url, out / "report")
        console.print(f"\nstore: [bold]{db_path}[/]  (try: crystaloop db ls --store {url} --elements Sr,Ti)")
        output.add(store=str(db_path))


def _demo_campaign(output: Output, url: str, report_dir: Path) -> None:
    """A short real campaign, examples/perovskite-water-splitting.yaml cut to 2 iterations, through
    the Prefect flow: the shipped perov_5 generator, the shipped band-gap surrogate, BO, CHGNet
    relaxations and the hull. Prefect runs in its local mode (a temporary server) unless
    ``PREFECT_API_URL`` points at one, where the run then shows in the UI."""
    import os

    import torch

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy 2-core machine needs more than 20 s
    from crystaloop.commands.campaign import print_reports, print_stability
    from crystaloop.commands.logs import adopt_prefect_logging
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.data.records import CandidateStatus
    from crystaloop.data.store import CandidateStore
    from crystaloop.flows.campaign import campaign_flow
    from crystaloop.flows.config import FlowSettings
    from crystaloop.flows.runtime import close_stores
    from crystaloop.loop.campaign import iteration_candidates
    from crystaloop.loop.config import load_campaign_config

    adopt_prefect_logging()

    torch.set_num_threads(1)
    config = load_campaign_config(_EXAMPLE)
    budget = config.budget.model_copy(update={"iterations": 2, "candidates_per_iteration": 24, "oracle_calls_per_iteration": 3})
    generator = config.generator.model_copy(update={"steps": 100, "method": "pc"})
    config = config.model_copy(update={"budget": budget, "generator": generator})
    console.print(f"\n[bold]demo campaign[/] {config.name}: 2 iterations through Prefect, 24 generated and 3 CHGNet "
                  "relaxations each")
    with exit_on_error():
        try:
            state = campaign_flow(config, store_url=url, settings=FlowSettings(report_dir=str(report_dir)), return_state=True)
            if not state.is_completed():
                raise CrystaloopError(f"the demo flow run ended {state.type.value}: {state.message}")
            reports = state.result()
        finally:
            close_stores()
    print_reports(output, config, reports)
    with CandidateStore(url) as db:
        print_stability(output, iteration_candidates(db, config.name, None, [CandidateStatus.EVALUATED]))
    figures = sorted(report_dir.glob("*.png"))
    console.print(f"report: [bold]{report_dir}[/] ({', '.join(p.name for p in figures) or 'no figures'})")
    output.add(report=str(report_dir), figures=[str(p) for p in figures])


def _print_store_summary(output: Output, summary: dict) -> None:
    """The store's candidates per status and its most common formulas."""
    statuses = [{"status": str(status), "candidates": count} for status, count in summary.get("by_status", {}).items()]
    output.table("statuses", (Column("status", "status"), Column("candidates", "candidates", justify="right")), statuses, title="candidate store")
    formulas = [{"formula": formula, "structures": count} for formula, count in summary.get("top_formulas", [])[:10]]
    if formulas or output.machine:
        output.table("top_formulas", (Column("formula", "formula"), Column("structures", "structures", justify="right")), formulas,
                     title="most common formulas")
    by_nelements = summary.get("by_nelements", {})
    if by_nelements:
        console.print("elements per structure: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_nelements.items())))
        output.add(elements_per_structure=by_nelements)
