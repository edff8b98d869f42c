"""A transient rich progress bar for long loops in any layer (silent when disabled)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["progress_bar"]


def progress_bar(
    enabled: bool = True,
    *,
    console: Console | None = None,
    elapsed: bool = False,
    remaining: bool = True,
    transient: bool = True,
) -> AbstractContextManager[Progress]:
    """A rich ``Progress`` with description, bar and count, then the time elapsed (``elapsed``)
    and the time left (``remaining``); does nothing if not ``enabled``.

    Args:
        enabled: False gives a silent bar with the same interface.
        console: where it draws (rich's default console when None).
        elapsed: add a time-elapsed column.
        remaining: add a time-remaining column.
        transient: remove the bar from the terminal when the block ends.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if elapsed:
        columns.append(TimeElapsedColumn())
    if remaining:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, transient=transient, disable=not enabled)
