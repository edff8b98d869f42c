"""``crystaloop oracle relax``: MLIP relaxations of structure files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

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
    read_structures,
    report_read,
)

__all__ = ["oracle_app", "RELAX_COLUMNS"]

oracle_app = typer.Typer(help="MLIP oracles: relax structures, energies.", no_args_is_help=True)


@oracle_app.command("relax", cls=RegistryHelpCommand)
def oracle_relax(
    path: Annotated[str, typer.Argument(help="A CIF/POSCAR file, a folder, a CDVAE CSV or extxyz.")],
    oracle: Annotated[str, typer.Option("--oracle", help="{oracles} (emt is ASE EMT: instant, for tests and demos)")] = "chgnet",
    fmax: Annotated[float, typer.Option("--fmax", min=0.0, help="Force tolerance, eV/Å.")] = 0.1,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Most optimiser steps.")] = 200,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write relaxed structures here: .extxyz (energy, forces, stress, status per frame), .json or .cif.")] = None,  # noqa: UP045
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Relax structures with an MLIP and report energy per atom and status."""
    from crystaloop.commands.files import write_relaxed
    from crystaloop.data.datasets.files import WRITE_SUFFIXES
    from crystaloop.surrogates.oracles import RelaxConfig, make_oracle

    check_out_path(out_file)
    if out_file is not None and out_file.suffix.lower() not in WRITE_SUFFIXES:
        raise fail(f"--out {out_file}: unknown extension {out_file.suffix!r}; allowed: {', '.join(WRITE_SUFFIXES)}")
    with Output(fmt) as out:
        with exit_on_error():
            runner_oracle = make_oracle(oracle, relax=RelaxConfig(fmax=fmax, max_steps=steps))
            ids, crystals, errors = read_structures(path)
            report_read(path, crystals, errors)
            if not crystals:
                raise fail_unreadable(path, errors)
            relaxations = runner_oracle.relax(crystals)
        rows = [
            {"structure": ident, "formula": crystal.reduced_formula, "status": r.status, "energy_per_atom": r.energy_per_atom,
             "steps": r.steps, "fmax": r.fmax, "reason": r.reason}
            for ident, crystal, r in zip(ids, crystals, relaxations, strict=True)
        ]
        out.table("relaxations", RELAX_COLUMNS, rows, title=f"{oracle} relaxation")
        if out_file is not None:
            with exit_on_error():
                written = write_relaxed(out_file, runner_oracle, ids, relaxations)
            if written:
                console.print(f"relaxed structures: [bold]{out_file}[/] ({written} with energy, forces, stress and status; failed ones left out)")
                out.add(written=str(out_file))
            else:
                err_console.print(f"[yellow]warning[/] every relaxation failed; nothing written to {out_file}", highlight=False)
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)


RELAX_COLUMNS = (
    Column("structure", "structure", max_width=20),
    Column("formula", "formula"),
    Column("status", "status"),
    Column("energy_per_atom", "energy (eV/atom)", "{:.4f}", justify="right"),
    Column("steps", "steps", justify="right", priority=3),
    Column("fmax", "fmax (eV/Å)", "{:.3f}", justify="right", priority=2),
    Column("reason", "reason", priority=1, max_width=24),
)
"""The relaxation table of ``oracle relax`` (and ``hull add``)."""
