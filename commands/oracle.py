"""``crystaloop oracle relax``: MLIP relaxations of structure files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
    RegistryHelpCommand,
    check_out_path,
    console,
    err_console,
    exit_on_error,
    fail,
    fail_unreadable,
    read_structures,
    report_read,
)

__all__ = ["oracle_app"]

oracle_app = typer.Typer(help="MLIP oracles: relax structures, energies.", no_args_is_help=True)


@oracle_app.command("relax", cls=RegistryHelpCommand)
def oracle_relax(
    path: Annotated[str, typer.Argument(help="A CIF/POSCAR file, a folder, a CDVAE CSV or extxyz.")],
    oracle: Annotated[str, typer.Option("--oracle", help="{oracles} (emt is ASE EMT: instant, for tests and demos)")] = "chgnet",
    fmax: Annotated[float, typer.Option("--fmax", min=0.0, help="Force tolerance, eV/Å.")] = 0.1,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Most optimiser steps.")] = 200,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write relaxed structures here: .extxyz (energy, forces, stress, status per frame), .json or .cif.")] = None,  # noqa: UP045
) -> None:
    """Relax structures with an MLIP and report energy per atom and status."""
    from rich.table import Table

    from crystaloop.commands.files import write_relaxed
    from crystaloop.data.datasets.files import WRITE_SUFFIXES
    from crystaloop.surrogates.oracles import RelaxConfig, make_oracle

    check_out_path(out)
    if out is not None and out.suffix.lower() not in WRITE_SUFFIXES:
        raise fail(f"--out {out}: unknown extension {out.suffix!r}; allowed: {', '.join(WRITE_SUFFIXES)}")
    with exit_on_error():
        runner_oracle = make_oracle(oracle, relax=RelaxConfig(fmax=fmax, max_steps=steps))
        ids, crystals, errors = read_structures(path)
        report_read(path, crystals, errors)
        if not crystals:
            raise fail_unreadable(path, errors)
        relaxations = runner_oracle.relax(crystals)
    table = Table("structure", "formula", "status", "energy (eV/atom)", "steps", "fmax (eV/Å)", "reason", title=f"{oracle} relaxation")
    for ident, crystal, result in zip(ids, crystals, relaxations, strict=True):
        energy = "" if result.energy_per_atom is None else f"{result.energy_per_atom:.4f}"
        table.add_row(ident, crystal.reduced_formula, result.status, energy, str(result.steps), f"{result.fmax:.3f}" if result.fmax is not None else "", result.reason)
    console.print(table)
    if out is not None:
        with exit_on_error():
            written = write_relaxed(out, runner_oracle, ids, relaxations)
        if written:
            console.print(f"relaxed structures: [bold]{out}[/] ({written} with energy, forces, stress and status; failed ones left out)")
        else:
            err_console.print(f"[yellow]warning[/] every relaxation failed; nothing written to {out}", highlight=False)
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)
