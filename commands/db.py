"""``crystaloop db ls|query``: read the candidate store (never creating one)."""

from __future__ import annotations

from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import StoreOption, console, err_console, exit_on_error, fail

__all__ = ["db_app"]

db_app = typer.Typer(help="The candidate store: list and inspect candidates.", no_args_is_help=True)

_QUERY_FORMATS = ("table", "json", "cif")
_CIF_FIELDS = ("lattice_vectors", "cartesian_site_positions", "species_at_sites")
_TABLE_FIELDS = ("chemical_formula_reduced", "nsites", "_crystaloop_status", "_crystaloop_e_above_hull", "_crystaloop_campaign")


@db_app.command("ls")
def db_ls(
    store: StoreOption = None,
    status: Annotated[Optional[list[str]], typer.Option("--status", help="Only these statuses (repeatable).")] = None,  # noqa: UP045
    elements: Annotated[Optional[str], typer.Option("--elements", help="Comma-separated elements that must all be present, e.g. Sr,Ti.")] = None,  # noqa: UP045
    campaign: Annotated[Optional[str], typer.Option("--campaign", help="Only this campaign's candidates.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000, help="Show at most this many rows.")] = 20,
) -> None:
    """List candidates in the store, newest first."""
    from rich.table import Table

    from crystaloop.data.store import CandidateFilter, CandidateStore, existing_store_url

    with exit_on_error("bad filter: ", invalid="bad filter: "):
        query = CandidateFilter(
            status=status or None,
            elements=[e.strip() for e in elements.split(",") if e.strip()] if elements else None,
            campaign=campaign,
            limit=limit,
        )
    with exit_on_error(), CandidateStore(existing_store_url(store)) as candidate_store:  # read-only: never creates a store
        candidates = candidate_store.query(query)
        total = candidate_store.count(query.model_copy(update={"limit": 100000}))
    table = Table("id", "formula", "sites", "status", "source / campaign", "measurements", title=f"{len(candidates)} of {total} candidates")
    for candidate in candidates:
        where = candidate.provenance.campaign or candidate.provenance.source or candidate.provenance.component
        measured = ", ".join(f"{m.property}={m.value:.3g}" for m in candidate.measurements if m.value is not None)
        table.add_row(candidate.id[:12], candidate.crystal.reduced_formula, str(candidate.crystal.n_sites), candidate.status.value, where or "", measured)
    console.print(table)


@db_app.command("query")
def db_query(
    filter_text: Annotated[str, typer.Argument(metavar="FILTER", help='OPTIMADE filter, e.g. \'elements HAS ALL "Sr","Ti" AND nsites<=10\'.')],
    fmt: Annotated[str, typer.Option("--format", help="table | json | cif")] = "table",
    limit: Annotated[int, typer.Option("--limit", min=0, max=100000, help="Show at most this many structures.")] = 20,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Sort fields, '-' for descending, e.g. _crystaloop_e_above_hull,-nsites.")] = None,  # noqa: UP045
    store: StoreOption = None,
) -> None:
    """Query the store with an OPTIMADE filter (the API's translator); bad filters exit with code 2."""
    import orjson
    from rich.table import Table

    from crystaloop.data.optimade.entries import DEFAULT_FIELDS, document_to_cif
    from crystaloop.data.optimade.errors import OptimadeRequestError
    from crystaloop.data.optimade.search import StructureSearch, open_readonly_engine
    from crystaloop.data.store import CandidateStore, existing_store_url

    if fmt not in _QUERY_FORMATS:
        raise fail(f"unknown --format {fmt!r}; allowed: {', '.join(_QUERY_FORMATS)}")
    fields = {"table": _TABLE_FIELDS, "cif": _CIF_FIELDS, "json": DEFAULT_FIELDS}[fmt]
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
        table = Table("id", "formula", "sites", "status", "e_above_hull (eV/atom)", "campaign", title=f"{len(page.documents)} of {page.data_returned} structures")
        for document in page.documents:
            a = document["attributes"]
            e_hull = a["_crystaloop_e_above_hull"]
            table.add_row(
                document["id"][:12], a["chemical_formula_reduced"] or "", str(a["nsites"]), a["_crystaloop_status"],
                "" if e_hull is None else f"{e_hull:.3f}", a["_crystaloop_campaign"] or "",
            )
        console.print(table)
