"""Console, error exit and YAML reading shared by the command groups."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

__all__ = ["CommandGroup", "console", "err_console", "fail", "fail_unreadable", "check_out_path", "read_yaml_mapping", "read_structures", "report_read", "progress_bar", "parse_composition", "parse_chemical_system"]

logger = logging.getLogger(__name__)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit (code 2) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


class CommandGroup(TyperGroup):
    """The top-level command group: an exception that no command turned into an ``error:`` line
    (an OS fault such as an unwritable ``--out`` path, or a bug) still ends as one ``error:``
    line naming the exception, with exit code 2, never a raw traceback; the traceback goes to
    the debug log (``crystaloop -v``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, typer.Exit, typer.Abort):
            raise
        except OSError as exc:
            logger.debug("command failed", exc_info=True)
            where = f": {exc.filename}" if exc.filename else ""
            raise fail(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:  # the last line of defence, see the class docstring
            logger.debug("command failed", exc_info=True)
            raise fail(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)") from None


def check_out_path(out: Path | None, option: str = "--out") -> None:
    """Exit early (before any expensive work) if ``out`` cannot be written: its folder is a file,
    or exists and is not writable."""
    if out is None:
        return
    import os

    folder = Path(out).expanduser().absolute().parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise fail(f"{option} {out}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise fail(f"{option} {out}: {existing} is not writable")
    if Path(out).is_dir():
        raise fail(f"{option} {out} is a folder; give a file name")


def fail_unreadable(path: str, errors: list) -> typer.Exit:
    """The exit for an input with no readable structure, naming each bad file or row and its reason
    (as ``data import`` reports them); the first five, then a count."""
    reasons = "; ".join(f"{e.source}: {e.problem}" for e in errors[:5])
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    why = f": {reasons}{more}" if reasons else " (the input is empty or holds only a header)"
    return fail(f"no readable structure in {path}{why}")


def read_yaml_mapping(path: Path | None, what: str) -> dict[str, Any]:
    """Read a YAML mapping (empty dict for ``None``); bad files exit naming the file."""
    if path is None:
        return {}
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise fail(f"{what} {path} must be a mapping of fields, got {type(loaded).__name__}")
    return loaded


def progress_bar(remaining: bool = True):  # noqa: ANN201 - rich.progress.Progress
    """A rich progress bar on stderr: description, bar, n/total, elapsed (and time remaining)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=err_console)


def parse_composition(text: str, option: str = "--composition") -> dict[str, int]:
    """Cell contents from a formula (``SrTiO3`` → {Sr: 1, Ti: 1, O: 3}); raises CrystaloopError naming it."""
    from pymatgen.core import Composition, Element

    from crystaloop.data.errors import CrystaloopError

    if not text.strip():
        raise CrystaloopError(f"{option} is empty; give a formula such as SrTiO3 (or leave the option out)")
    try:
        parsed = Composition(text)
    except Exception as exc:  # pymatgen raises ValueError or its own errors
        raise CrystaloopError(f"{option} {text!r} is not a chemical formula: {exc}") from None
    if any(abs(v - round(v)) > 1e-6 for v in parsed.values()):
        raise CrystaloopError(f"{option} {text!r} must have whole-number counts (cell contents)")
    unknown = [getattr(el, "symbol", str(el)) for el in parsed if not isinstance(el, Element)]
    if unknown:
        raise CrystaloopError(f"{option} {text!r}: unknown element {unknown[0]!r}; allowed: element symbols H..Og")
    return {str(el): int(round(v)) for el, v in parsed.items()}


def parse_chemical_system(text: str, option: str = "chemical system") -> tuple[str, ...]:
    """Sorted distinct elements of ``Ca-Co-O-F`` (or ``Ca,Co,O,F``); raises CrystaloopError naming
    ``option`` for an empty system or a non-element."""
    from crystaloop.data.errors import CrystaloopError

    elements = [e.strip() for e in text.replace(",", "-").split("-") if e.strip()]
    if not elements:
        raise CrystaloopError(f"{option} {text!r} is empty; write it as Ca-Co-O-F (or leave the option out)")
    for element in elements:
        parse_composition(element, option=option)
    return tuple(sorted(set(elements)))


def read_structures(path: str):  # -> (ids, crystals, errors)
    """(ids, crystals, bad rows) of every structure in ``path``: a CIF (every data block), POSCAR or
    JSON file (pymatgen dicts, OPTIMADE documents, what ``generate`` writes), a folder, a CDVAE CSV
    or an extxyz file (every frame), via :func:`~crystaloop.data.datasets.load_dataset`."""
    from crystaloop.data.datasets import load_dataset

    dataset = load_dataset(path)
    return dataset.ids, dataset.crystals, dataset.errors


def report_read(path: str, crystals: list, errors: list) -> None:
    """``read N structures from PATH (M unreadable)`` on stderr, so a cut file never goes unnoticed."""
    bad = f" ({len(errors)} unreadable, listed below)" if errors else ""
    err_console.print(f"read {len(crystals)} structure{'s' if len(crystals) != 1 else ''} from {path}{bad}", highlight=False)
