"""`crystaloop hull add | show | eval`: the competing phases behind e_above_hull, and what it says.

Every command uses one oracle (``--oracle``, CHGNet by default) and its persistent result cache
(``$CRYSTALOOP_CACHE_DIR/oracle.db``), so the prototype phases of a system are built once and
known phases added here count in every later hull of that oracle, campaigns included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
    Column,
    FormatOption,
    Output,
    OutputFormat,
    RegistryHelpCommand,
    check_out_path,
    console,
    err_console,
    exit_on_error,
    fail,
    fail_unreadable,
    parse_chemical_system,
    progress_bar,
    read_structures,
)
from crystaloop.commands.oracle import RELAX_COLUMNS

__all__ = ["hull_app"]

hull_app = typer.Typer(help="Convex hulls: competing phases, known phases, e_above_hull of files.", no_args_is_help=True)

OracleOption = Annotated[str, typer.Option("--oracle", help="{oracles} (every energy of the hull comes from it)")]
FmaxOption = Annotated[float, typer.Option("--fmax", min=0.0, help="Force tolerance of relaxations, eV/Å.")]
StepsOption = Annotated[int, typer.Option("--steps", min=1, help="Most optimiser steps per relaxation.")]


def _hull(oracle: str, fmax: float, steps: int):
    from crystaloop.surrogates.hull import EnergyAboveHull
    from crystaloop.surrogates.oracles import OracleCache, RelaxConfig, make_oracle

    return EnergyAboveHull(make_oracle(oracle, relax=RelaxConfig(fmax=fmax, max_steps=steps), cache=OracleCache()))


def _read_all(paths: list[str]) -> tuple[list[str], list, list]:
    ids, crystals, errors = [], [], []
    for path in paths:
        file_ids, file_crystals, file_errors = read_structures(path)
        ids += [f"{Path(path).name}#{i}" if len(file_ids) > 1 else f"{Path(path).name}" for i in file_ids]
        crystals += file_crystals
        errors += file_errors
    return ids, crystals, errors


def _report_errors(errors: list) -> None:
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)


@hull_app.command("add", cls=RegistryHelpCommand)
def hull_add(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Structure files, folders, CDVAE CSVs or extxyz (e.g. a system's Materials Project entries).")] = None,  # noqa: UP045
    oracle: OracleOption = "chgnet",
    fmax: FmaxOption = 0.1,
    steps: StepsOption = 200,
    from_store: Annotated[Optional[str], typer.Option("--from-store", help="Also add the imported structures of this store (SQLAlchemy URL).")] = None,  # noqa: UP045
    system: Annotated[Optional[str], typer.Option("--system", help="With --from-store: only structures within this chemical system, e.g. Sr-Ti-O.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", min=1, help="With --from-store: most structures taken.")] = 1000,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Relax known structures with the oracle and add them to its hulls as known phases."""
    if not paths and from_store is None:
        raise fail("give structure files to add, or --from-store URL")
    with Output(fmt) as out:
        _add(out, paths or [], oracle, fmax, steps, from_store, system, limit)


def _add(out: Output, paths: list[str], oracle: str, fmax: float, steps: int, from_store: str | None, system: str | None, limit: int) -> None:
    with exit_on_error():
        ids, crystals, errors = _read_all(paths)
        if paths:
            err_console.print(f"read {len(crystals)} structures from {len(paths)} path(s) ({len(errors)} unreadable)", highlight=False)
        if from_store is not None:
            store_ids, store_crystals = _imported(from_store, system, limit)
            err_console.print(f"{len(store_crystals)} imported structures from the store", highlight=False)
            ids, crystals = ids + store_ids, crystals + store_crystals
        if not crystals:
            raise fail(f"no readable structure in {', '.join(paths or [from_store or ''])}")
        hull = _hull(oracle, fmax, steps)
        relaxations = hull.add_known(crystals, ids)
    rows = [
        {"structure": ident, "formula": crystal.reduced_formula, "status": r.status, "energy_per_atom": r.energy_per_atom,
         "steps": r.steps, "fmax": r.fmax, "reason": r.reason}
        for ident, crystal, r in zip(ids, crystals, relaxations, strict=True)
    ]
    out.table("known_phases", RELAX_COLUMNS, rows, title=f"known phases added ({oracle})")
    added = sum(r.status == "ok" for r in relaxations)
    console.print(f"{added} of {len(crystals)} structures added; only converged relaxations enter a hull")
    out.add(added=added)
    _report_errors(errors)


def _imported(url: str, system: str | None, limit: int) -> tuple[list[str], list]:
    """(labels, crystals) of a store's imported candidates (within ``system`` when given)."""
    from crystaloop.data.records import CandidateStatus
    from crystaloop.data.store import CandidateStore

    criteria: dict[str, Any] = {"status": [CandidateStatus.IMPORTED], "limit": limit}
    if system is not None:
        criteria |= {"elements": _system(system), "elements_only": True}
    with CandidateStore(url) as store:
        candidates = store.query(criteria)
    return [f"store:{c.id[:12]}" for c in candidates], [c.crystal for c in candidates]


def _system(text: str) -> list[str]:
    return list(parse_chemical_system(text))


@hull_app.command("show", cls=RegistryHelpCommand)
def hull_show(
    system: Annotated[str, typer.Argument(help="Chemical system, e.g. Ca-Co-O-F.")],
    oracle: OracleOption = "chgnet",
    fmax: FmaxOption = 0.1,
    steps: StepsOption = 200,
    out: Annotated[Optional[Path], typer.Option("--out", help="Phase-diagram PNG (default hull-<system>.png).")] = None,  # noqa: UP045
    all_phases: Annotated[bool, typer.Option("--all", help="List phases above the hull too.")] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Print the phases on a system's hull (formula, energy, source) and draw its phase diagram."""
    with Output(fmt) as output:
        _show(output, system, oracle, fmax, steps, out, all_phases)


_PHASE_COLUMNS = (
    Column("formula", "formula"),
    Column("energy_per_atom", "energy (eV/atom)", "{:.4f}", justify="right"),
    Column("formation_energy_per_atom", "formation (eV/atom)", "{:.4f}", justify="right"),
    Column("on_hull", "on hull", lambda on: "yes" if on else ""),
    Column("kind", "kind", priority=1),
    Column("source", "source", priority=2, max_width=24),
)


def _show(output: Output, system: str, oracle: str, fmax: float, steps: int, out: Path | None, all_phases: bool) -> None:
    with exit_on_error(catch=(ValueError,)):
        elements = _system(system)
        hull = _hull(oracle, fmax, steps)
        phases = hull.hull_phases(elements)
        diagram = hull.phase_diagram(elements)
    name = "-".join(elements)
    rows = [
        {"formula": p.formula, "energy_per_atom": p.energy_per_atom, "formation_energy_per_atom": p.formation_energy_per_atom,
         "on_hull": bool(p.on_hull), "kind": p.kind, "source": p.label}
        for p in phases
        if p.on_hull or all_phases
    ]
    output.table("phases", _PHASE_COLUMNS, rows, title=f"{name} hull ({oracle})")
    counts = {kind: sum(p.kind == kind for p in phases) for kind in ("elements", "prototype", "known", "campaign")}
    console.print("phases: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    output.add(system=name, oracle=oracle, phase_counts=counts)
    path = out or Path(f"hull-{name}.png")
    try:
        _plot(diagram, path)
        console.print(f"phase diagram: [bold]{path}[/]")
        output.add(phase_diagram=str(path))
    except (ValueError, OSError) as exc:
        err_console.print(f"[yellow]no phase-diagram figure:[/] {exc}", highlight=False)


def _plot(diagram, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDPlotter

    if len(diagram.elements) > 4:
        raise ValueError(f"pymatgen draws up to 4 elements; {len(diagram.elements)} here")
    plot = PDPlotter(diagram, backend="matplotlib", show_unstable=0.2).get_plot()
    figure = plot.get_figure() if hasattr(plot, "get_figure") else plt.gcf()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


@hull_app.command("eval", cls=RegistryHelpCommand)
def hull_eval(
    path: Annotated[str, typer.Argument(help="A structure file, folder, CDVAE CSV or extxyz.")],
    oracle: OracleOption = "chgnet",
    fmax: FmaxOption = 0.1,
    steps: StepsOption = 200,
    out: Annotated[Optional[Path], typer.Option("--out", help="Results as JSON (default: print only).")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N structures.")] = None,  # noqa: UP045
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Relax every structure and report its e_above_hull, decomposition and coverage class."""
    check_out_path(out)
    with Output(fmt) as output:
        _eval(output, path, oracle, fmax, steps, out, limit)


def _hull_value(record: dict[str, Any]) -> str:
    """The hull cell: the value in eV/atom, or why there is none."""
    value = record["e_above_hull"]
    return f"{value:.4f}" if value is not None else f"{record['status']}: {record['reason'][:60]}"


_EVAL_COLUMNS = (
    Column("id", "structure", max_width=20),
    Column("formula", "formula"),
    Column("energy_per_atom", "energy (eV/atom)", "{:.4f}", justify="right", priority=2),
    Column("e_above_hull", "e_above_hull (eV/atom)", _hull_value, justify="right", from_row=True),
    Column("coverage", "coverage", priority=3),
    Column("decomposition_text", "decomposition", priority=1),
)


def _eval(output: Output, path: str, oracle: str, fmax: float, steps: int, out: Path | None, limit: int | None) -> None:
    with exit_on_error():
        ids, crystals, errors = read_structures(path)
        if not crystals:
            raise fail_unreadable(path, errors)
        err_console.print(f"read {len(crystals)} structures from {path} ({len(errors)} unreadable)", highlight=False)
        if limit is not None:
            ids, crystals = ids[:limit], crystals[:limit]
        hull = _hull(oracle, fmax, steps)
        records = _evaluate(hull, ids, crystals)
    output.table("structures", _EVAL_COLUMNS, records, title=f"{oracle} hull")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=1))
        console.print(f"results: [bold]{out}[/]")
        output.add(results=str(out))
    _report_errors(errors)


def _evaluate(hull, ids: list[str], crystals: list) -> list[dict[str, Any]]:
    from crystaloop.surrogates.hull import PROPERTY, decomposition_text

    records = []
    with progress_bar() as progress:
        task = progress.add_task(f"{hull.oracle.name} hull", total=len(crystals))
        for ident, crystal in zip(ids, crystals, strict=True):
            (relaxation,) = hull.oracle.relax([crystal])
            (measurement,) = hull.e_above_hull([crystal], relaxations=[relaxation])
            decomposition = measurement.details.get("decomposition", [])
            records.append(
                {
                    "id": ident,
                    "formula": crystal.reduced_formula,
                    "energy_per_atom": relaxation.energy_per_atom,
                    "relaxation_status": relaxation.status,
                    "property": measurement.property,
                    "status": measurement.status,
                    "e_above_hull": measurement.value if measurement.property == PROPERTY else None,
                    "formation_energy_vs_elements": measurement.value if measurement.property != PROPERTY else None,
                    "hull_distance": measurement.details.get("hull_distance"),
                    "coverage": measurement.details.get("coverage"),
                    "basis": measurement.details.get("basis"),
                    "decomposition": decomposition,
                    "decomposition_text": decomposition_text(decomposition),
                    "reason": measurement.reason,
                }
            )
            progress.advance(task)
    return records
