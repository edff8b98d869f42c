"""``crystaloop data import|info|split``: datasets into the store, summarised, split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
    Column,
    FormatOption,
    Output,
    OutputFormat,
    StoreOption,
    console,
    err_console,
    exit_on_error,
    fail_unreadable,
    progress_bar,
    task_callback,
)

if TYPE_CHECKING:
    from crystaloop.data.importing import ImportReport
    from crystaloop.data.store import CandidateStore

__all__ = ["data_app", "run_import", "print_import_report"]

data_app = typer.Typer(help="Datasets: import into the store, inspect, split.", no_args_is_help=True)


def run_import(spec: str, store: CandidateStore, fmt: str | None, max_rows: int | None) -> ImportReport:
    """Import one file, folder or shipped dataset into ``store``, with a parsing and a storing bar."""
    from crystaloop.data.importing import import_dataset

    with progress_bar(remaining=False, transient=True) as bar:
        return import_dataset(
            spec,
            store,
            fmt=fmt,  # type: ignore[arg-type]
            max_rows=max_rows,
            parse_progress=task_callback(bar, f"parsing {spec}"),
            insert_progress=task_callback(bar, f"storing {spec}"),
        )


def print_import_report(report: ImportReport) -> None:
    """``SOURCE: read N, added A, already stored E, bad rows B``, then each bad row and its reason."""
    console.print(
        f"[bold]{report.source}[/]: read {report.read}, added {report.added}, "
        f"already stored {report.existing}, bad rows {len(report.errors)}"
    )
    for error in report.errors:
        err_console.print(f"  [yellow]bad row[/] {error.source}: {error.problem}", highlight=False)
    if report.read == 0 and not report.errors:
        err_console.print(f"  [yellow]no structures[/] in {report.source}: the input is empty (or holds only a header)", highlight=False)


@data_app.command("import")
def data_import(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or shipped datasets (perov_5/train) to import.")],
    store: StoreOption = None,
    fmt: Annotated[Optional[str], typer.Option("--input-format", "--format", help="cdvae-csv | structure-folder | extxyz; detected when omitted.")] = None,  # noqa: UP045
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 if any row was bad (good rows are still imported).")] = False,
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="Read at most this many rows per CSV.")] = None,  # noqa: UP045
) -> None:
    """Import structures into the store; every bad row is reported with its reason."""
    from crystaloop.data.store import CandidateStore, redact_url

    with exit_on_error(), CandidateStore(store) as candidate_store:
        reports = [run_import(spec, candidate_store, fmt, max_rows) for spec in paths]
        console.print(f"store: {redact_url(candidate_store.url)}", highlight=False)
    for report in reports:
        print_import_report(report)
    if strict and any(not r.ok for r in reports):
        raise typer.Exit(code=1)


_PROPERTY_COLUMNS = (
    Column("property", "property"),
    Column("units", "units"),
    Column("count", "count", justify="right"),
    Column("mean", "mean", "{:.4g}", justify="right"),
    Column("min", "min", "{:.4g}", justify="right"),
    Column("max", "max", "{:.4g}", justify="right"),
)


@data_app.command("info")
def data_info(
    path: Annotated[str, typer.Argument(help="A file, folder or shipped dataset (perov_5/val).")],
    input_format: Annotated[Optional[str], typer.Option("--input-format", help="cdvae-csv | structure-folder | extxyz; detected when omitted.")] = None,  # noqa: UP045
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Summarise a dataset: structures, sizes, elements, properties and bad rows."""
    from crystaloop.data.datasets import load_dataset

    with Output(fmt) as out:
        with exit_on_error(), progress_bar(remaining=False, transient=True) as bar:
            dataset = load_dataset(path, fmt=input_format, progress=task_callback(bar, f"parsing {path}"))  # type: ignore[arg-type]
        if not dataset.crystals:
            raise fail_unreadable(path, dataset.errors)
        summary = dataset.summary()
        console.print(
            f"[bold]{path}[/]: {summary['structures']} structures, {summary['bad_rows']} bad rows, "
            f"{summary['sites_min']}–{summary['sites_max']} sites (mean {summary['sites_mean']:.1f}), "
            f"{len(summary['elements'])} elements"
        )
        properties = [{"property": name, **stats} for name, stats in summary["properties"].items()]
        if properties or out.machine:
            out.table("properties", _PROPERTY_COLUMNS, properties, title="numeric columns")
        out.add(**{k: v for k, v in summary.items() if k != "properties"}, bad_row_reasons=[str(e) for e in dataset.errors])
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

    with exit_on_error():
        written = write_split_csv(source, out, parse_fractions(fractions), seed=seed)
    for name, path in written.items():
        console.print(f"{name}: {path}")
