"""The `crystaloop` command line: ``crystaloop <group> <command>``.

Groups: ``data`` (import, info, split), ``db`` (ls) and ``demo``. Heavy libraries are imported
inside commands, so ``crystaloop --help`` answers at once. Store URLs are SQLAlchemy URLs, taken
from ``--store`` or ``CRYSTALOOP_DB_URL``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crystaloop.data.importing import ImportReport

app = typer.Typer(help="crystaloop: closed-loop inverse materials design.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Datasets: import into the store, inspect, split.", no_args_is_help=True)
db_app = typer.Typer(help="The candidate store: list and inspect candidates.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger("crystaloop.cli")

StoreOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--store", help="SQLAlchemy URL of the store (sqlite:///path.db, postgresql://...); default $CRYSTALOOP_DB_URL or sqlite:///crystaloop.db"),
]


@app.callback()
def _configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


@contextmanager
def _progress() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """One rich progress display; ``new_task(description)`` returns a ``callback(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:

        def new_task(description: str) -> Callable[[int, int], None]:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return update

        yield new_task


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def _run_import(spec: str, store, fmt: str | None, max_rows: int | None) -> ImportReport:
    from crystaloop.data.importing import import_dataset

    with _progress() as new_task:
        return import_dataset(
            spec,
            store,
            fmt=fmt,  # type: ignore[arg-type]
            max_rows=max_rows,
            parse_progress=new_task(f"parsing {spec}"),
            insert_progress=new_task(f"storing {spec}"),
        )


def _print_import_report(report: ImportReport) -> None:
    console.print(
        f"[bold]{report.source}[/]: read {report.read}, added {report.added}, "
        f"already stored {report.existing}, bad rows {len(report.errors)}"
    )
    for error in report.errors:
        err_console.print(f"  [yellow]bad row[/] {error.source}: {error.problem}", highlight=False)


@data_app.command("import")
def data_import(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or shipped datasets (perov_5/train) to import.")],
    store: StoreOption = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="cdvae-csv | structure-folder | extxyz; detected when omitted.")] = None,  # noqa: UP045
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 if any row was bad (good rows are still imported).")] = False,
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="Read at most this many rows per CSV.")] = None,  # noqa: UP045
) -> None:
    """Import structures into the store; every bad row is reported with its reason."""
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.data.store import CandidateStore

    try:
        with CandidateStore(store) as candidate_store:
            reports = [_run_import(spec, candidate_store, fmt, max_rows) for spec in paths]
            console.print(f"store: {candidate_store.url}")
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    for report in reports:
        _print_import_report(report)
    if strict and any(not r.ok for r in reports):
        raise typer.Exit(code=1)


@data_app.command("info")
def data_info(
    path: Annotated[str, typer.Argument(help="A file, folder or shipped dataset (perov_5/val).")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="cdvae-csv | structure-folder | extxyz.")] = None,  # noqa: UP045
) -> None:
    """Summarise a dataset: structures, sizes, elements, properties and bad rows."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.data.errors import CrystaloopError

    try:
        with _progress() as new_task:
            dataset = load_dataset(path, fmt=fmt, progress=new_task(f"parsing {path}"))  # type: ignore[arg-type]
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    summary = dataset.summary()
    console.print(
        f"[bold]{path}[/]: {summary['structures']} structures, {summary['bad_rows']} bad rows, "
        f"{summary['sites_min']}–{summary['sites_max']} sites (mean {summary['sites_mean']:.1f}), "
        f"{len(summary['elements'])} elements"
    )
    if summary["properties"]:
        table = Table("property", "units", "count", "mean", "min", "max", title="numeric columns")
        for name, stats in summary["properties"].items():
            table.add_row(name, stats["units"], str(stats["count"]), f"{stats['mean']:.4g}", f"{stats['min']:.4g}", f"{stats['max']:.4g}")
        console.print(table)
    for error in dataset.errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)


@data_app.command("split")
def data_split(
    source: Annotated[Path, typer.Argument(help="A CDVAE-style CSV to split.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for <part>.csv.gz files.")],
    fractions: Annotated[str, typer.Option("--fractions", help="name=fraction pairs summing to 1.")] = "train=0.8,val=0.2",
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the split.")] = 0,
) -> None:
    """Split a CSV into seeded parts, copying every row verbatim."""
    from crystaloop.data.datasets import parse_fractions, write_split_csv
    from crystaloop.data.errors import CrystaloopError

    try:
        written = write_split_csv(source, out, parse_fractions(fractions), seed=seed)
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    for name, path in written.items():
        console.print(f"{name}: {path}")


@db_app.command("ls")
def db_ls(
    store: StoreOption = None,
    status: Annotated[Optional[list[str]], typer.Option("--status", help="Only these statuses (repeatable).")] = None,  # noqa: UP045
    elements: Annotated[Optional[str], typer.Option("--elements", help="Comma-separated elements that must all be present, e.g. Sr,Ti.")] = None,  # noqa: UP045
    campaign: Annotated[Optional[str], typer.Option("--campaign", help="Only this campaign's candidates.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000, help="Show at most this many rows.")] = 20,
) -> None:
    """List candidates in the store, newest first."""
    from pydantic import ValidationError

    from crystaloop.data.errors import CrystaloopError, describe_validation_error
    from crystaloop.data.store import CandidateFilter, CandidateStore

    try:
        query = CandidateFilter(
            status=status or None,
            elements=[e.strip() for e in elements.split(",") if e.strip()] if elements else None,
            campaign=campaign,
            limit=limit,
        )
    except ValidationError as exc:
        raise _fail(f"bad filter: {describe_validation_error(exc)}") from None
    except CrystaloopError as exc:
        raise _fail(f"bad filter: {exc}") from None
    try:
        with CandidateStore(store) as candidate_store:
            candidates = candidate_store.query(query)
            total = candidate_store.count(query.model_copy(update={"limit": 100000}))
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    table = Table("id", "formula", "sites", "status", "source / campaign", "measurements", title=f"{len(candidates)} of {total} candidates")
    for candidate in candidates:
        where = candidate.provenance.campaign or candidate.provenance.source or candidate.provenance.component
        measured = ", ".join(f"{m.property}={m.value:.3g}" for m in candidate.measurements if m.value is not None)
        table.add_row(candidate.id[:12], candidate.crystal.reduced_formula, str(candidate.crystal.n_sites), candidate.status.value, where or "", measured)
    console.print(table)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's store.")] = Path("runs/demo"),
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="Rows per shipped file (all by default).")] = None,  # noqa: UP045
) -> None:
    """Import the shipped datasets into a fresh SQLite store and summarise it."""
    from crystaloop.data.datasets import SHIPPED_DATASETS
    from crystaloop.data.store import CandidateStore

    out.mkdir(parents=True, exist_ok=True)
    db_path = out / "store.db"
    for stale in out.glob("store.db*"):
        stale.unlink()
    url = f"sqlite:///{db_path}"
    with CandidateStore(url) as candidate_store:
        reports = [
            _run_import(f"{name}/{split}", candidate_store, None, max_rows)
            for name, splits in SHIPPED_DATASETS.items()
            for split in splits
        ]
        for report in reports:
            _print_import_report(report)
        summary = candidate_store.summary()
    _print_store_summary(summary)
    console.print(f"\nstore: [bold]{db_path}[/]  (try: crystaloop db ls --store {url} --elements Sr,Ti)")


def _print_store_summary(summary: dict) -> None:
    table = Table("status", "candidates", title="candidate store")
    for status, count in summary.get("by_status", {}).items():
        table.add_row(str(status), str(count))
    console.print(table)
    formulas = summary.get("top_formulas", [])
    if formulas:
        top = Table("formula", "structures", title="most common formulas")
        for formula, count in formulas[:10]:
            top.add_row(formula, str(count))
        console.print(top)
    by_nelements = summary.get("by_nelements", {})
    if by_nelements:
        console.print("elements per structure: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_nelements.items())))


def main() -> None:
    """Entry point of the ``crystaloop`` console script."""
    app()


if __name__ == "__main__":
    main()
