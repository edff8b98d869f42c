"""SQL building blocks of filter translation: probes of the child tables, chemical-system lookups.

:func:`member` and :func:`not_member` test a candidate's element, verdict or record rows through
their ``(candidate_id, …)`` keys; :func:`record_compare` turns ``min(values) op x`` into such
probes; :func:`chemical_system` answers ``elements HAS ONLY`` from the ``candidates.elements``
index; :func:`elements_array_match` answers ``HAS ALL/ANY/ONLY`` of element symbols on
PostgreSQL from the GIN index of ``candidates.element_array`` (revision 0005). Used by
:class:`crystaloop.data.optimade.filters.FilterTransformer`, which counts the probes each filter
needs against its cost limits.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, exists, literal, not_, or_, select
from sqlalchemy.dialects.postgresql import ARRAY

from crystaloop.data.optimade.fields import ElementTarget, RecordTarget
from crystaloop.data.store.schema import CandidateRow, element_array

__all__ = [
    "member",
    "not_member",
    "record_compare",
    "chemical_system",
    "element_symbols",
    "elements_array_match",
    "MAX_SYSTEM",
]

MAX_SYSTEM = 8
"""Chemical systems of up to this many elements become a list of their (at most 255) subsets."""
_C = CandidateRow
_ARRAY_OPERATORS = {"": "@>", "ALL": "@>", "ANY": "&&", "ONLY": "<@"}


def chemical_system(target: Any, mode: str, items: tuple[tuple[str, Any], ...]) -> ColumnElement[bool] | None:
    """``elements HAS ONLY "A","B",…`` as ``candidates.elements IN ('A', 'B', 'A,B', …)``, or None.

    A candidate has only elements of S exactly when its sorted, comma-joined element list is one
    of the non-empty subsets of S: an index lookup per subset instead of a scan of every
    candidate. Used for up to ``MAX_SYSTEM`` distinct symbols compared with ``=``.
    """
    if not (isinstance(target, ElementTarget) and target.what != "elements_ratios" and mode == "ONLY"):
        return None
    if any(op != "=" or not isinstance(v, str) or "," in v for op, v in items):
        return None
    symbols = sorted({v for _, v in items})
    if len(symbols) > MAX_SYSTEM:
        return None
    subsets = [",".join(c) for k in range(1, len(symbols) + 1) for c in combinations(symbols, k)]
    return _C.elements.in_(subsets)


def element_symbols(target: Any, items: tuple[tuple[str, Any], ...]) -> list[str] | None:
    """The symbols of an ``elements``/``species_at_sites`` list compared with ``=`` only, else None."""
    if not isinstance(target, ElementTarget) or target.what == "elements_ratios":
        return None
    if any(op != "=" or not isinstance(v, str) for op, v in items):
        return None
    return [v for _, v in items]


def elements_array_match(mode: str, symbols: list[str]) -> ColumnElement[bool]:
    """PostgreSQL: ``elements HAS [ALL|ANY|ONLY] symbols`` as one comparison of ``candidates.element_array``.

    The element list as ``text[]`` (revision 0005) compared with the symbols: ``@>`` (contains
    every symbol) for ``HAS`` and ``HAS ALL``, ``&&`` (shares one) for ``HAS ANY``, ``<@`` (lies
    within them) for ``HAS ONLY``. The GIN index ``ix_candidates_element_array`` answers all three:
    one index probe whatever the number of symbols, where ``candidate_elements`` needs one
    semi-join per ``HAS ALL`` value. Same answers: a candidate's list holds each of its elements
    once and is never empty.
    """
    wanted = cast(literal(list(symbols), type_=ARRAY(Text)), ARRAY(Text))
    return element_array().op(_ARRAY_OPERATORS[mode], is_comparison=True)(wanted)


def member(candidate_id: Any, *conditions: Any) -> ColumnElement[bool]:
    """``candidates.id IN (SELECT candidate_id FROM <child> WHERE …)``: driven by the child's index."""
    return _C.id.in_(select(candidate_id).where(*conditions))


def not_member(candidate_id: Any, *conditions: Any) -> ColumnElement[bool]:
    """No child row of the candidate satisfies ``conditions``: a correlated NOT EXISTS, probed through
    the child's (candidate_id, …) key for the candidates a positive condition already selected."""
    return not_(exists().where(candidate_id == _C.id, *conditions))


def record_compare(target: RecordTarget, op: str, value: float) -> ColumnElement[bool]:
    """``min(values) op value`` as IN / NOT IN conditions (index range scans, no aggregate)."""
    candidate_id, column, base = target.parts()

    def some(condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return member(candidate_id, *base, condition)

    def none(condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return not_member(candidate_id, *base, condition)

    known = some(column.is_not(None))
    if op == "<":
        return some(column < value)
    if op == "<=":
        return some(column <= value)
    if op == ">":
        return and_(known, none(column <= value))
    if op == ">=":
        return and_(known, none(column < value))
    if op == "=":
        return and_(some(column == value), none(column < value))
    return and_(known, or_(none(column == value), some(column < value)))  # !=
