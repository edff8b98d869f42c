"""What the command groups share: consoles, the error exit, progress, option types, input reading,
and the one formatter of tables (:class:`Output`: ``--format table|json|csv``)."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional  # noqa: UP035 - typer needs Optional on 3.11

import click
import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "Column",
    "CommandGroup",
    "FormatOption",
    "Output",
    "OutputFormat",
    "fitted_table",
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


class OutputFormat(StrEnum):
    """What a table-printing command writes on stdout (``--format``)."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format", case_sensitive=False,
        help="table (fits the terminal), json (one document, every field, nothing else on stdout) or csv (one row per line).",
    ),
]
"""``--format table|json|csv`` of every command that prints a table (see :class:`Output`)."""


@dataclass(frozen=True)
class Column:
    """One column of a command's table.

    ``key`` names the field in the row dicts (and in the JSON and CSV output); ``header`` is what
    the table shows (with units); ``show`` turns a value into its table cell (a format string such
    as ``"{:.4f}"`` or a function; ``None`` values show as empty cells). When the table does not
    fit the terminal, columns with the largest ``priority`` are left out first (0: never left
    out); words longer than ``max_width`` characters (ids, paths) are cut with an ellipsis.
    ``from_row``: ``show`` takes the whole row (a cell that explains a missing value).
    """

    key: str
    header: str
    show: str | Callable[[Any], object] = "{}"
    priority: int = 0
    max_width: int | None = None
    justify: Literal["left", "right"] = "left"
    from_row: bool = False

    def cell(self, row: dict[str, Any]) -> str:
        """The table cell of this column in ``row``."""
        if self.from_row and callable(self.show):
            return str(self.show(row))
        value = row.get(self.key)
        if value is None:
            return ""
        if callable(self.show):
            return str(self.show(value))
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return self.show.format(value)


class Output:
    """A command's tables in the chosen ``--format``, the one place that formats them.

    Use as a context manager around the command's work and call :meth:`table` for each table
    (rows are dicts of plain values, keyed by the columns' keys; extra keys go to JSON and CSV
    only) and :meth:`add` for other results (paths written, totals)::

        with Output(fmt) as out:
            out.table("relaxations", columns, rows, title="chgnet relaxation")
            out.add(written="relaxed.extxyz")

    * ``table``: each table is printed at once, fitted to the console width: columns are given the
      width of their longest word at least (never a word broken mid-way), low-priority columns
      are left out when even that does not fit (named on stderr), long cells wrap at spaces.
    * ``json``: one JSON document on stdout when the block ends, ``{table name: [rows], **added}``;
      while the block runs, anything else written to stdout (notes, a library's prints) goes to
      stderr, so stdout holds the document alone.
    * ``csv``: the rows of the table (several tables with the same columns are stacked, with a
      first column ``table``); ``csv=False`` marks a command whose tables differ, and asking it
      for csv exits at once with the formats it has.
    """

    def __init__(self, fmt: OutputFormat | str, *, csv: bool = True, command: str = "this command") -> None:
        self.format = OutputFormat(fmt)
        if self.format is OutputFormat.CSV and not csv:
            raise fail(f"--format csv: {command} prints several different tables; use --format json (or table)")
        self._tables: dict[str, tuple[list[Column], list[dict[str, Any]]]] = {}
        self._added: dict[str, Any] = {}
        self._stack = ExitStack()
        self._stdout: Any = None

    @property
    def machine(self) -> bool:
        """True for json and csv: stdout carries only the document."""
        return self.format is not OutputFormat.TABLE

    def __enter__(self) -> Output:
        if self.machine:
            self._stdout = sys.stdout
            self._stack.enter_context(redirect_stdout(sys.stderr))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._stack.close()
        if exc_type is None and self.machine:
            self._stdout.write(self.render())
            self._stdout.flush()

    def table(self, name: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]], *, title: str | None = None) -> None:
        """Record the table ``name`` (its JSON key); in table format print it now under ``title``."""
        if name in self._added:
            raise ValueError(f"{name!r} already names a result of this output")
        self._tables[name] = (list(columns), [dict(r) for r in rows])
        if not self.machine:
            table, left_out = fitted_table(list(columns), list(rows), title=title, width=console.width)
            console.print(table, soft_wrap=False)
            if left_out:
                err_console.print(f"({', '.join(left_out)} left out at {console.width} columns; --format json has every field)", highlight=False)

    def add(self, **fields: Any) -> None:
        """Results beside the tables: keys of the JSON document (not shown in the other formats)."""
        clash = set(fields) & set(self._tables)
        if clash:
            raise ValueError(f"{sorted(clash)} already name tables of this output")
        self._added.update(fields)

    def render(self) -> str:
        """The JSON or CSV text of what was recorded."""
        if self.format is OutputFormat.JSON:
            document = {name: rows for name, (_, rows) in self._tables.items()} | self._added
            return json.dumps(_plain(document), indent=1, allow_nan=False) + "\n"
        return _csv_text(self._tables)


def fitted_table(columns: list[Column], rows: list[dict[str, Any]], *, title: str | None, width: int) -> tuple[Any, list[str]]:
    """(rich Table, headers left out) of ``rows`` fitted to ``width`` characters (see :class:`Output`)."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    cells = [[c.cell(row) for c in columns] for row in rows]

    def longest_word(text: str, cap: int | None) -> int:
        words = text.split() or [""]
        length = max(cell_len(w) for w in words)
        return min(length, cap) if cap else length

    lows = [max([longest_word(c.header, None)] + [longest_word(r[i], c.max_width) for r in cells]) for i, c in enumerate(columns)]
    highs = [max([cell_len(c.header)] + [cell_len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    kept = list(range(len(columns)))
    overhead = lambda n: 3 * n + 1  # noqa: E731 - borders and padding of rich's default box
    while sum(lows[i] for i in kept) + overhead(len(kept)) > width:
        droppable = [i for i in kept if columns[i].priority > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    room = width - overhead(len(kept))
    widths = _share_widths([lows[i] for i in kept], [highs[i] for i in kept], room)
    table = Table(title=Text(title) if title else None)
    for i, w in zip(kept, widths, strict=True):
        table.add_column(Text(columns[i].header), width=w, justify=columns[i].justify, overflow="ellipsis")
    for row in cells:
        table.add_row(*(Text(row[i]) for i in kept))
    return table, [columns[i].header for i in range(len(columns)) if i not in kept]


def _share_widths(lows: list[int], highs: list[int], room: int) -> list[int] | list[None]:
    """Column widths within ``room``: every column its natural width if all fit, else its longest
    word plus a share of the rest in proportion to what it lacks; all ``None`` (rich decides)
    when even the longest words do not fit."""
    if sum(highs) <= room:
        return list(highs)
    spare = room - sum(lows)
    if spare < 0:
        return [None] * len(lows)
    gaps = [h - lo for lo, h in zip(lows, highs, strict=True)]
    total = sum(gaps)
    widths = [lo + spare * gap // total for lo, gap in zip(lows, gaps, strict=True)]
    for i in sorted(range(len(gaps)), key=lambda i: -gaps[i])[: room - sum(widths)]:
        widths[i] += 1
    return widths


def _csv_text(tables: dict[str, tuple[list[Column], list[dict[str, Any]]]]) -> str:
    import csv
    import io

    keys: list[str] = []
    for columns, rows in tables.values():
        for key in [c.key for c in columns] + [k for r in rows for k in r]:
            if key not in keys:
                keys.append(key)
    stacked = len(tables) > 1
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", *keys] if stacked else keys)
    for name, (_, rows) in tables.items():
        for row in rows:
            values = [_csv_cell(row.get(k)) for k in keys]
            writer.writerow([name, *values] if stacked else values)
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: numpy scalars and arrays as numbers and lists, enums as their
    values, paths as strings, NaN and infinities as None (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy scalars and arrays
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
