"""SQL building blocks of filter translation: probes of the child tables, chemical-system lookups.

:func:`member` and :func:`not_member` test a candidate's element, verdict or record rows through
their ``(candidate_id, …)`` keys; :func:`record_compare` turns ``min(values) op x`` into such
probes; :func:`chemical_system` answers ``elements HAS ONLY`` from the ``candidates.elements``
index. Used by :class:`crystaloop.data.optimade.filters.FilterTransformer`, which counts the
probes each filter needs against its cost limits.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from crystaloop.data.optimade.fields import ElementTarget, RecordTarget
from crystaloop.data.store.schema import CandidateRow

__all__ = ["member", "not_member", "record_compare", "chemical_system", "element_symbols", "MAX_SYSTEM"]

MAX_SYSTEM = 8
"""Chemical systems of up to this many elements become a list of their (at most 255) subsets."""
_C = CandidateRow


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
