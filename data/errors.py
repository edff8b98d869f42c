"""The error hierarchy every crystaloop component raises from.

One base class, :class:`CrystaloopError`, and a few specific subclasses. Messages name the bad
value and, where there is a closed set, the allowed ones, so a user can fix the input without
reading the code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CrystaloopError",
    "InvalidStructureError",
    "DatasetError",
    "UnknownComponentError",
    "StoreError",
    "StatusTransitionError",
    "OracleError",
    "QueryError",
    "describe_validation_error",
]


class CrystaloopError(Exception):
    """Base class of every error crystaloop raises on purpose."""


class InvalidStructureError(CrystaloopError, ValueError):
    """A crystal structure is malformed or physically implausible.

    ``source`` names where it came from (file, row, candidate id) so the message can point there.
    """

    def __init__(self, problem: str, *, source: str | None = None) -> None:
        self.problem = problem
        self.source = source
        super().__init__(f"{source}: {problem}" if source else problem)

    def with_source(self, source: str) -> InvalidStructureError:
        """The same problem, attributed to ``source`` (a file or row)."""
        return InvalidStructureError(self.problem, source=source)


class DatasetError(CrystaloopError, ValueError):
    """A dataset file or folder cannot be read as a whole (missing columns, unknown format)."""


class UnknownComponentError(CrystaloopError, KeyError):
    """A registry lookup used a name that is not registered."""

    def __init__(self, kind: str, name: str, allowed: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.allowed = sorted(allowed)
        super().__init__(f"unknown {kind} {name!r}; allowed: {', '.join(self.allowed)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class StoreError(CrystaloopError):
    """The candidate store cannot do what was asked (bad URL, schema too new, missing row)."""


class StatusTransitionError(StoreError, ValueError):
    """A candidate was moved to a status its current status does not lead to."""


class OracleError(CrystaloopError):
    """An oracle's infrastructure failed (not a failed calculation, which is a Measurement)."""


class QueryError(CrystaloopError, ValueError):
    """A query or filter is malformed or uses something unsupported."""


def describe_validation_error(exc: Exception) -> str:
    """One line per problem of a pydantic ``ValidationError``: field, message and the bad value."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for error in errors():
        loc = [str(part) for part in error.get("loc", ())]
        kinds = [part.removeprefix("kind=") for part in loc if part.startswith("kind=")]  # union tags (data/kinds.py)
        where = ".".join(part for part in loc if not part.startswith("kind=")) or "value"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = f"unknown setting{f' for kind {kinds[-1]!r}' if kinds else ''}"
        lines.append(f"{where}: {message} (got {error.get('input')!r})")
    return "; ".join(lines)
