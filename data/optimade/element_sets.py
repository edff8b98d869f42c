"""Exact counts of element-only filters from the element-set summary, without visiting the matches.

Whether a candidate satisfies ``elements HAS ALL "Sr","O"``, ``HAS ANY``, ``HAS ONLY``,
``nelements > 2``, ``LENGTH elements = 3`` or any AND / OR / NOT of them depends on its element
list alone. Every candidate with the same list answers the same way, so the number of matches is
the sum of ``candidate_element_sets.n`` (revision 0006: one row per distinct list, kept exact by
triggers) over the lists that satisfy the filter: a scan of one row per distinct list (a few
hundred to a few thousand) instead of one visit per match (10⁵ at 10⁶ candidates).

:func:`first_ids_page` answers the page of such a filter from the matching lists: the first ids
of each list from the index on ``(elements, id)`` (revision 0007), not every match sorted.

:func:`element_set_condition` translates such a filter into a condition on
:class:`~crystaloop.data.store.schema.ElementSetRow`, or returns ``None`` when any part of it
depends on something else (``nsites``, a record, a guard, a ratio, a ``HAS`` with an operator
other than ``=``), and the count stays the ``count(*)`` of the candidates. The count is exact
either way: never an estimate.

Example::

    translation = FilterTranslator("postgresql").translate('elements HAS ALL "Sr","O"')
    condition = element_set_condition(translation, "postgresql")
    n = conn.execute(element_set_count(condition)).scalar_one()   # == count(*) of the matches
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from lark.exceptions import VisitError
from sqlalchemy import ColumnElement, Integer, Select, Table, and_, cast, false, func, or_, select, union_all
from sqlalchemy.sql.elements import False_, True_

from crystaloop.data.optimade.fields import ElementTarget, FieldSpec
from crystaloop.data.optimade.filters import _OPS, FilterTransformer, Translation
from crystaloop.data.store.schema import CandidateRow, ElementSetRow

__all__ = [
    "element_set_condition",
    "element_set_lists",
    "element_set_count",
    "element_set_total",
    "first_ids_page",
    "ElementSetTransformer",
    "ELEMENT_SETS",
]

logger = logging.getLogger(__name__)

ELEMENT_SETS: Table = ElementSetRow.__table__  # type: ignore[assignment]
_S = ELEMENT_SETS.c
_C = CandidateRow


class _NotElementOnly(Exception):
    """Raised inside the transformer: this part of the filter depends on more than the element list."""


def _constant(expr: Any) -> ColumnElement[bool]:
    """``expr`` when it is the same for every candidate (``true()``/``false()``), else not element-only."""
    if isinstance(expr, True_ | False_):
        return expr
    raise _NotElementOnly


class ElementSetTransformer(FilterTransformer):
    """The filter's conditions over ``candidate_element_sets`` instead of ``candidates``.

    Reuses every value and boolean rule of :class:`FilterTransformer` and replaces the
    comparisons: element predicates and ``nelements`` become conditions on the summary row,
    constant ones stay constant, anything else raises (caught by :func:`element_set_condition`).
    """

    def _contains(self, symbol: str) -> ColumnElement[bool]:
        """The summary row's list holds ``symbol`` (case-sensitive, whole symbols only)."""
        if not symbol or "," in symbol:
            return false()  # no stored list has an empty or comma-holding symbol
        padded = "," + _S.elements + ","
        position = func.strpos if self.dialect == "postgresql" else func.instr
        return position(padded, f",{symbol},") > 0

    def _compare(self, spec: FieldSpec, op: str, value: Any) -> ColumnElement[bool]:
        if spec.name == "nelements" and not isinstance(value, FieldSpec):
            return _OPS[op](_S.nelements, self._check_value(spec, value))
        return _constant(super()._compare(spec, op, value))

    def _known(self, spec: FieldSpec, known: bool) -> ColumnElement[bool]:
        return _constant(super()._known(spec, known))

    def _fuzzy(self, spec: FieldSpec, mode: str, value: Any) -> ColumnElement[bool]:
        return _constant(super()._fuzzy(spec, mode, value))

    def _has(self, spec: FieldSpec, mode: str, items: tuple[tuple[str, Any], ...]) -> ColumnElement[bool]:
        target = spec.target
        symbolic = isinstance(target, ElementTarget) and target.what != "elements_ratios"
        if not symbolic or any(op != "=" or not isinstance(v, str) for op, v in items):
            return _constant(super()._has(spec, mode, items))
        symbols = list(dict.fromkeys(v for _, v in items))
        tests = [self._contains(s) for s in symbols]
        if mode == "ANY":
            return or_(*tests)
        if mode == "ONLY":  # every element of the list is one of the symbols: as many hits as elements
            hits = [cast(t, Integer) for s, t in zip(symbols, tests, strict=True) if s and "," not in s]
            return and_(_S.nelements > 0, sum(hits[1:], hits[0]) == _S.nelements) if hits else false()
        return and_(*tests)

    def _length(self, spec: FieldSpec, op: str, n: int) -> ColumnElement[bool]:
        target = spec.target
        if isinstance(target, ElementTarget) and target.what == "elements" and spec.type == "list":
            return _OPS[op](_S.nelements, n)
        return _constant(super()._length(spec, op, n))

    def _zip(self, specs: tuple[FieldSpec, ...], mode: str, zips: Any) -> ColumnElement[bool]:
        raise _NotElementOnly


def element_set_condition(translation: Translation, dialect: str) -> ColumnElement[bool] | None:
    """The condition on ``candidate_element_sets`` rows equivalent to ``translation``'s filter, or ``None``.

    ``None`` for no filter, or for a filter with any part that depends on more than the element
    list (count those with ``count(*)``).

    Args:
        translation: from :meth:`FilterTranslator.translate` (it keeps its parse tree).
        dialect: ``"sqlite"`` or ``"postgresql"`` (the database the condition will run on).
    """
    if translation.where is None or translation.tree is None:
        return None
    transformer = ElementSetTransformer(dialect)
    try:
        condition = transformer.transform(translation.tree)
    except VisitError as exc:
        if not isinstance(exc.orig_exc, _NotElementOnly):  # the translation itself passed: count the matches
            logger.warning("element-set translation failed, counting matches instead: %r", exc.orig_exc)
        return None
    return condition if isinstance(condition, ColumnElement) else None


def element_set_lists(condition: ColumnElement[bool]) -> Select[Any]:
    """``SELECT elements, n FROM candidate_element_sets WHERE condition``: the matching lists and their counts."""
    return select(_S.elements, _S.n).where(condition)


def first_ids_page(lists: Sequence[str], limit: int, offset: int) -> Select[Any]:
    """The candidates of ``lists`` (element lists) ranked ``offset`` to ``offset + limit`` by id.

    One ``ORDER BY id LIMIT offset + limit`` per list, each read from the index on
    ``(elements, id)`` (revision 0007) alone, then the best of those: about ``len(lists) *
    (offset + limit)`` index entries and ``limit`` row fetches, however many candidates match.
    Needs at least one list.
    """
    if not lists:
        raise ValueError("first_ids_page needs at least one element list")
    branches = [select(_C.id).where(_C.elements == e).order_by(_C.id).limit(offset + limit) for e in lists]
    ids = (union_all(*branches) if len(branches) > 1 else branches[0]).subquery("first_ids")
    top = select(ids.c.id).order_by(ids.c.id).limit(limit).offset(offset)
    return select(CandidateRow.__table__).where(_C.id.in_(top)).order_by(_C.id)


def element_set_count(condition: ColumnElement[bool]) -> Select[Any]:
    """``SELECT coalesce(sum(n), 0) FROM candidate_element_sets WHERE condition``: the exact match count."""
    return select(func.coalesce(func.sum(_S.n), 0)).select_from(ELEMENT_SETS).where(condition)


def element_set_total() -> Select[Any]:
    """The number of candidates, from the summary (``sum(n)`` over every row)."""
    return select(func.coalesce(func.sum(_S.n), 0)).select_from(ELEMENT_SETS)
