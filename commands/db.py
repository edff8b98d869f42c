"""``crystaloop db ls|query``: read the candidate store (never creating one)."""

from __future__ import annotations

from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
    Column,
    FormatOption,
    Output,
    OutputFormat,
    StoreOption,
    err_console,
    exit_on_error,
    fail,
)

__all__ = ["db_app"]

db_app = typer.Typer(help="The candidate store: list and inspect candidates.", no_args_is_help=True)

_QUERY_FORMATS = ("table", "json", "csv", "cif")
_CIF_FIELDS = ("lattice_vectors", "cartesian_site_positions", "species_at_sites")
_TABLE_FIELDS = ("chemical_formula_reduced", "nsites", "_crystaloop_status", "_crystaloop_e_above_hull", "_crystaloop_campaign")


@db_app.command("ls")
def db_ls(
    store: StoreOption = None,
    status: Annotated[Optional[list[str]], typer.Option("--status", help="Only these statuses (repeatable).")] = None,  # noqa: UP045
    elements: Annotated[Optional[str], typer.Option("--elements", help="Comma-separated elements that must all be present, e.g. Sr,Ti.")] = None,  # noqa: UP045
    campaign: Annotated[Optional[str], typer.Option("--campaign", help="Only this campaign's candidates.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000, help="Show at most this many rows.")] = 20,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """List candidates in the store, newest first."""
    from crystaloop.data.store import CandidateFilter, CandidateStore, existing_store_url

    with exit_on_error("bad filter: ", invalid="bad filter: "):
        query = CandidateFilter(
            status=status or None,
            elements=[e.strip() for e in elements.split(",") if e.strip()] if elements else None,
            campaign=campaign,
            limit=limit,
        )
    with Output(fmt) as out:
        with exit_on_error(), CandidateStore(existing_store_url(store)) as candidate_store:  # read-only: never creates a store
            candidates = candidate_store.query(query)
            total = candidate_store.count(query.model_copy(update={"limit": 100000}))
        rows = [
            {
                "id": c.id, "formula": c.crystal.reduced_formula, "sites": c.crystal.n_sites, "status": c.status.value,
                "where": c.provenance.campaign or c.provenance.source or c.provenance.component or "",
                "measurements": {m.property: m.value for m in c.measurements if m.value is not None},
            }
            for c in candidates
        ]  # fmt: skip
        out.table("candidates", _LS_COLUMNS, rows, title=f"{len(candidates)} of {total} candidates")
        out.add(total=total)


def _measured(values: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.3g}" for name, value in values.items())


_LS_COLUMNS = (
    Column("id", "id", "{:.12}"),
    Column("formula", "formula"),
    Column("sites", "sites", justify="right", priority=2),
    Column("status", "status"),
    Column("where", "source / campaign", priority=1, max_width=24),
    Column("measurements", "measurements", _measured, priority=3),
)
_QUERY_COLUMNS = (
    Column("id", "id", "{:.12}"),
    Column("chemical_formula_reduced", "formula"),
    Column("nsites", "sites", justify="right", priority=2),
    Column("_crystaloop_status", "status"),
    Column("_crystaloop_e_above_hull", "e_above_hull (eV/atom)", "{:.3f}", justify="right"),
    Column("_crystaloop_campaign", "campaign", priority=1, max_width=24),
)


@db_app.command("query")
def db_query(
    filter_text: Annotated[str, typer.Argument(metavar="FILTER", help='OPTIMADE filter, e.g. \'elements HAS ALL "Sr","Ti" AND nsites<=10\'.')],
    fmt: Annotated[str, typer.Option("--format", help="table | json (the OPTIMADE documents) | csv (the table's columns) | cif")] = "table",
    limit: Annotated[int, typer.Option("--limit", min=0, max=100000, help="Show at most this many structures.")] = 20,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Sort fields, '-' for descending, e.g. _crystaloop_e_above_hull,-nsites.")] = None,  # noqa: UP045
    store: StoreOption = None,
) -> None:
    """Query the store with an OPTIMADE filter (the API's translator); bad filters exit with code 2."""
    import orjson

    from crystaloop.data.optimade.entries import DEFAULT_FIELDS, document_to_cif
    from crystaloop.data.optimade.errors import OptimadeRequestError
    from crystaloop.data.optimade.search import StructureSearch, open_readonly_engine
    from crystaloop.data.store import CandidateStore, existing_store_url

    if fmt not in _QUERY_FORMATS:
        raise fail(f"unknown --format {fmt!r}; allowed: {', '.join(_QUERY_FORMATS)}")
    fields = {"table": _TABLE_FIELDS, "csv": _TABLE_FIELDS, "cif": _CIF_FIELDS, "json": DEFAULT_FIELDS}[fmt]
    with exit_on_error():
        try:
            url = existing_store_url(store)  # read-only: a missing SQLite file is an error, never created
            CandidateStore(url).close()  # migrates an existing store's schema, like every db command
            engine = open_readonly_engine(url)
            try:
                page = StructureSearch(engine).search(filter_text, sort=sort, limit=limit, fields=fields)
            finally:
                engine.dispose()
        except OptimadeRequestError as exc:  # a QueryError, named as the filter's fault
            raise fail(f"bad filter ({exc.title}): {exc}") from None
    for warning in page.warnings:
        err_console.print(f"[yellow]warning[/] {warning.title}: {warning.detail}", highlight=False)
    if fmt == "json":
        body = {"data": page.documents, "meta": {"data_returned": page.data_returned, "more_data_available": page.more_data_available}}
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif fmt == "cif":
        for document in page.documents:
            typer.echo(document_to_cif(document))
    else:
        with Output(fmt) as out:
            rows = [{"id": d["id"], **{k: d["attributes"][k] for k in _TABLE_FIELDS}} for d in page.documents]
            out.table("structures", _QUERY_COLUMNS, rows, title=f"{len(page.documents)} of {page.data_returned} structures")
