"""What the command groups share: consoles, the error exit, progress, option types, input reading."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional  # noqa: UP035 - typer needs Optional on 3.11

import click
import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "CommandGroup",
    "RegistryHelpCommand",
    "StoreOption",
    "console",
    "err_console",
    "exit_on_error",
    "fail",
    "fail_unreadable",
    "check_out_path",
    "read_yaml_mapping",
    "read_structures",
    "report_read",
    "progress_bar",
    "task_callback",
    "parse_composition",
    "parse_chemical_system",
]

logger = logging.getLogger(__name__)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


StoreOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--store", help="SQLAlchemy URL of the store (sqlite:///path.db, postgresql://...); default $CRYSTALOOP_DB_URL or sqlite:///crystaloop.db"),
]
"""``--store URL`` of the commands that read or fill a store (campaign commands have their own:
their config's ``store_url`` comes first)."""


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit (code 2) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


@contextmanager
def exit_on_error(prefix: str = "", *, invalid: str | None = None, catch: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn the errors a command expects into its one ``error:`` line and exit code 2.

    Inside the block, a :class:`~crystaloop.data.errors.CrystaloopError` (or one of ``catch``)
    exits with ``error: {prefix}{message}``; a pydantic ``ValidationError`` exits with
    ``error: {invalid}{the described fields}`` when ``invalid`` is given (``""``: no prefix) and
    propagates otherwise, like anything else (the top-level :class:`CommandGroup` reports those).
    """
    from pydantic import ValidationError

    from crystaloop.data.errors import CrystaloopError, describe_validation_error

    try:
        yield
    except ValidationError as exc:
        if invalid is not None:
            raise fail(f"{invalid}{describe_validation_error(exc)}") from None
        if isinstance(exc, catch):
            raise fail(f"{prefix}{exc}") from None
        raise
    except (CrystaloopError, *catch) as exc:
        raise fail(f"{prefix}{exc}") from None


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


class RegistryHelpCommand(TyperCommand):
    """A command whose option help may say ``{oracles}``: filled with the names of the oracle
    registry (:data:`crystaloop.surrogates.oracles.registry.ORACLES`) when the help is shown, so
    the list is never written by hand and ``crystaloop --help`` never imports the registry."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from crystaloop.surrogates.oracles.registry import ORACLES

        for param in self.params:
            help_text = getattr(param, "help", None)
            if help_text and "{oracles}" in help_text:
                param.help = help_text.replace("{oracles}", " | ".join(ORACLES))
        super().format_help(ctx, formatter)


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


def progress_bar(*, remaining: bool = True, transient: bool = False) -> AbstractContextManager[Progress]:
    """The commands' progress display: :func:`crystaloop.data.progress.progress_bar` on stderr with
    the elapsed time (and the time remaining); ``transient`` bars vanish when done."""
    from crystaloop.data.progress import progress_bar as library_bar

    return library_bar(console=err_console, elapsed=True, remaining=remaining, transient=transient)


def task_callback(bar: Progress, description: str) -> Callable[[int, int], None]:
    """A new task of ``bar`` as the ``progress(done, total)`` callback the library functions take."""
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update


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
