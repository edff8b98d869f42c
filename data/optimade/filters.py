"""OPTIMADE filters → SQLAlchemy expressions over the candidate store.

The filter text is parsed with the ``optimade`` package's grammar (v1.2) and parser
(:class:`optimade.filterparser.LarkParser`; an LALR parser of the same grammar answers first, see
:func:`parse_filter`); the tree is turned into one SQLAlchemy boolean expression over
:class:`~crystaloop.data.store.schema.CandidateRow` by our own transformer,
:class:`FilterTransformer`. Values only ever reach SQL as bound parameters.

Semantics follow the OPTIMADE specification: a comparison involving an unknown (``null``) value is
false, so ``NOT (x = 1)`` is true where ``x`` is unknown; ``IS KNOWN`` / ``IS UNKNOWN`` test for
it; properties with another provider's prefix are unknown. Supported beyond the mandatory set:
``HAS ONLY``, operators inside ``HAS`` lists, ``elements:elements_ratios`` zip queries,
constant-first comparisons, property-to-property comparisons of plain columns, ``LENGTH`` with
an operator. ``chemical_formula_reduced = "SrTiO3"`` is read as the OPTIMADE reduced formula
``"O3SrTi"`` (with a warning). Everything else raises :class:`FilterNotImplementedError` (501);
malformed filters, unknown fields, type mismatches and numbers beyond ±1.8·10³⁰⁸ raise
:class:`BadFilterError` (400).

Cost limits bound the SQL any filter can produce: ``HAS``/``HAS ALL/ANY/ONLY`` value lists and
``elements:elements_ratios`` tuples are de-duplicated first; then a ``HAS ALL`` (one index probe
per value) takes at most ``max_all_values`` distinct values, any list at most
``max_list_values``, and the whole filter at most ``max_probes`` probes of the element, verdict
and record tables. Beyond a limit the filter is refused with :class:`FilterTooCostlyError` (400,
naming the limit). On PostgreSQL a ``HAS``/``HAS ALL/ANY/ONLY`` of element symbols (``=``
only) is one probe of the GIN index of ``candidates.element_array`` (revision 0005,
``@>``/``&&``/``<@``) rather than one ``candidate_elements`` probe per value.
:attr:`Translation.cost` (probes plus two per scan-only construct) lets the search put expensive
filters through a concurrency limit of their own. The SQL building blocks
(membership probes, record comparisons, chemical-system lookups) live in
:mod:`~crystaloop.data.optimade.probes`; this module stays one rule per grammar construct, which
is why it runs past 600 lines.

Example::

    translation = FilterTranslator("sqlite").translate('elements HAS ALL "Sr","Ti" AND nsites<=10')
    rows = conn.execute(select(CandidateRow.id).where(translation.where))
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from math import gcd
from typing import Any

from lark import Token, Transformer
from lark.exceptions import VisitError
from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, true

from crystaloop.data.optimade.errors import (
    BadFilterError,
    FilterNotImplementedError,
    FilterTooCostlyError,
    OptimadeRequestError,
    OptimadeWarning,
)
from crystaloop.data.optimade.fields import (
    ColumnTarget,
    ConstantListTarget,
    ConstantTarget,
    ElementTarget,
    FieldSpec,
    GuardTarget,
    RecordTarget,
    UnknownTarget,
    resolve_field,
)
from crystaloop.data.optimade.parsing import parse_filter, rewrite_length_first
from crystaloop.data.optimade.probes import (
    chemical_system,
    element_symbols,
    elements_array_match,
    member,
    not_member,
    record_compare,
)
from crystaloop.data.store.schema import CandidateElementRow, CandidateRow, VerdictRow

__all__ = [
    "Translation",
    "FilterTranslator",
    "FilterTransformer",
    "parse_filter",
    "MAX_FILTER_LENGTH",
    "MAX_TERMS",
    "MAX_ALL_VALUES",
    "MAX_LIST_VALUES",
    "MAX_PROBES",
]

logger = logging.getLogger(__name__)

MAX_FILTER_LENGTH = 2000
"""Longest filter accepted (characters); a malformed one goes through the Earley parser, ~0.15 s per 1000 characters."""
MAX_TERMS = 200
"""Most comparisons plus list values in one filter (bounds the SQL a request can produce)."""
MAX_ALL_VALUES = 16
"""Most distinct values of one ``HAS ALL`` list or zip (each is an index probe of its own)."""
MAX_LIST_VALUES = 120
"""Most distinct values of any ``HAS ANY/ONLY`` list or zip (there are 118 elements)."""
MAX_PROBES = 24
"""Most probes of the element, verdict and record tables in one filter."""
_MAX_DIGITS = 330  # longer digit strings are out of float range anyway; int() of them is never tried

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_REVERSED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ESCAPE = re.compile(r'\\(["\\])')
_FORMULA = re.compile(r"^(?:[A-Z][a-z]?\d*)+$")
_FORMULA_PART = re.compile(r"([A-Z][a-z]?)(\d*)")
_C = CandidateRow
_E = CandidateElementRow
_V = VerdictRow


@dataclass(frozen=True)
class _Rhs:
    """The right-hand side of a property-first comparison, before it meets its property."""

    kind: str  # cmp | known | fuzzy | has | length | zip
    op: str = "="
    value: Any = None
    mode: str = ""  # has: "" (single) | ALL | ANY | ONLY; fuzzy: CONTAINS | STARTS | ENDS
    items: tuple[Any, ...] = ()
    props: tuple[FieldSpec, ...] = ()


@dataclass
class Translation:
    """A translated filter: the WHERE expression (``None``: no filter), its warnings, cost and parse tree.

    ``cost`` counts the probes of child tables (elements, verdicts, records) plus two for each
    construct that can only be answered by scanning candidates (CONTAINS, LENGTH of guard lists,
    comparisons of two properties).
    """

    where: ColumnElement[bool] | None
    warnings: list[OptimadeWarning] = field(default_factory=list)
    cost: int = 0
    tree: Any = field(default=None, repr=False, compare=False)
    """The parse tree the expression came from (:mod:`~crystaloop.data.optimade.element_sets` reads it again)."""


class FilterTranslator:
    """Translate OPTIMADE filter strings for one SQL dialect (``"sqlite"`` or ``"postgresql"``).

    Args:
        dialect: the database the expressions will run on (string matching differs).
        max_length: longest filter accepted, characters.
        max_terms: most comparisons plus list values per filter.
        max_all_values: most distinct values of a ``HAS ALL`` list (or zip).
        max_list_values: most distinct values of any list.
        max_probes: most child-table probes per filter.

    Attributes:
        elements_index: on PostgreSQL (default there), answer ``elements HAS ALL/ANY/ONLY`` of
            symbols from the GIN index of ``candidates.element_array`` (revision 0005) instead of
            ``candidate_elements`` probes; set it to ``False`` for the probes, as SQLite runs them
            (for comparisons).
    """

    def __init__(
        self,
        dialect: str = "sqlite",
        *,
        max_length: int = MAX_FILTER_LENGTH,
        max_terms: int = MAX_TERMS,
        max_all_values: int = MAX_ALL_VALUES,
        max_list_values: int = MAX_LIST_VALUES,
        max_probes: int = MAX_PROBES,
    ) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise BadFilterError(f"unsupported SQL dialect {dialect!r}; allowed: sqlite, postgresql")
        self.dialect = dialect
        self.max_length = max_length
        self.elements_index = dialect == "postgresql"
        self.limits = {
            "max_terms": max_terms,
            "max_all_values": max_all_values,
            "max_list_values": max_list_values,
            "max_probes": max_probes,
        }

    def translate(self, text: str | None) -> Translation:
        """The WHERE expression of ``text`` (``None`` or blank: no condition).

        Raises:
            BadFilterError: syntax error, unknown field, type mismatch, filter too long or large (400).
            FilterTooCostlyError: a cost limit is exceeded (400; a subclass of ``BadFilterError``).
            FilterNotImplementedError: valid OPTIMADE this server does not support (501).
        """
        if text is None or not text.strip():
            return Translation(None)
        if len(text) > self.max_length:
            raise BadFilterError(f"filter is {len(text)} characters long; at most {self.max_length} are accepted", parameter="filter")
        if "\x00" in text:
            raise BadFilterError("filter must not contain NUL characters", parameter="filter")
        transformer = FilterTransformer(self.dialect, elements_index=self.elements_index, **self.limits)
        try:
            tree = parse_filter(text)
        except BadFilterError:
            rewritten = rewrite_length_first(text)
            if rewritten is None:
                raise
            tree = parse_filter(rewritten)  # still raises if it does not parse either
            transformer.warnings.append(
                OptimadeWarning("NonStandardSyntax", f"'LENGTH <list> <op> <n>' was read as '<list> LENGTH <op> <n>': {rewritten!r}")
            )
        try:
            where = transformer.transform(tree)
        except VisitError as exc:
            if isinstance(exc.orig_exc, OptimadeRequestError):
                error = exc.orig_exc
                error.parameter = error.parameter or "filter"
                raise error from None
            # A value the rules did not foresee (a conversion that overflows…) is still the
            # filter's fault, not the server's: answer 400 and log it for a closer look.
            logger.warning("filter %r could not be translated: %r", text[:200], exc.orig_exc)
            raise BadFilterError(
                f"cannot translate filter {text[:200]!r}: {type(exc.orig_exc).__name__}: {str(exc.orig_exc)[:200]}", parameter="filter"
            ) from None
        except RecursionError:
            raise BadFilterError("filter is nested too deeply", parameter="filter") from None
        if isinstance(where, FieldSpec | _Rhs) or (where is not None and not isinstance(where, ColumnElement)):
            raise BadFilterError(f"filter {text[:200]!r} is not a boolean expression", parameter="filter")
        return Translation(where, transformer.warnings, transformer.cost, tree=tree)


def _unescape(token: str) -> str:
    return _ESCAPE.sub(r"\1", token[1:-1])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _alphabetical_formula(value: str) -> str | None:
    """``value`` as an OPTIMADE reduced formula (alphabetical, reduced), or None if not a formula."""
    if not _FORMULA.match(value):
        return None
    counts: dict[str, int] = {}
    for symbol, n in _FORMULA_PART.findall(value):
        counts[symbol] = counts.get(symbol, 0) + (int(n) if n else 1)
    if any(n <= 0 for n in counts.values()):
        return None
    divisor = 0
    for n in counts.values():
        divisor = gcd(divisor, n)
    return "".join(s + (str(counts[s] // divisor) if counts[s] != divisor else "") for s in sorted(counts))


class FilterTransformer(Transformer):
    """Bottom-up transformer of an OPTIMADE parse tree into a SQLAlchemy boolean expression.

    Rule methods return plain values (str, int, float, :class:`FieldSpec`), :class:`_Rhs`
    descriptions, and finally SQL expressions. One instance per filter (it counts terms and
    collects warnings). ``elements_index``: see :class:`FilterTranslator`.
    """

    def __init__(
        self,
        dialect: str,
        *,
        elements_index: bool = False,
        max_terms: int = MAX_TERMS,
        max_all_values: int = MAX_ALL_VALUES,
        max_list_values: int = MAX_LIST_VALUES,
        max_probes: int = MAX_PROBES,
    ) -> None:
        super().__init__()
        self.dialect = dialect
        self.elements_index = elements_index
        self.max_terms = max_terms
        self.max_all_values = max_all_values
        self.max_list_values = max_list_values
        self.max_probes = max_probes
        self.terms = 0
        self.probes = 0
        self.cost = 0
        self.warnings: list[OptimadeWarning] = []

    # ------------------------------------------------------------------ values
    def filter(self, children: list[Any]) -> Any:
        return children[0] if children else None

    def string(self, children: list[Token]) -> str:
        return _unescape(str(children[0]))

    def number(self, children: list[Token]) -> int | float:
        token = children[0]
        text = str(token)
        if token.type == "SIGNED_INT" and len(text) <= _MAX_DIGITS:
            value = int(text)
            if abs(value) < 2**63:
                return value
        number = float(text) if len(text) <= _MAX_DIGITS or token.type != "SIGNED_INT" else math.inf
        if not math.isfinite(number):
            raise BadFilterError(f"number {_abridged(text)} is out of range (at most ±1.8e308)", parameter="filter")
        return number

    def signed_int(self, children: list[Token]) -> int:
        text = str(children[0])
        if len(text) > _MAX_DIGITS or abs(int(text)) >= 2**63:
            raise BadFilterError(f"integer {_abridged(text)} is out of range (at most ±{2**63 - 1})", parameter="filter")
        return int(text)

    def bool(self, children: list[Any]) -> Any:
        raise BadFilterError("TRUE/FALSE cannot be compared: no structures field is boolean", parameter="filter")

    def property(self, children: list[Token]) -> FieldSpec:
        if len(children) > 1:
            name = ".".join(str(c) for c in children)
            raise FilterNotImplementedError(f"nested properties and relationships ({name!r}) are not supported", parameter="filter")
        return resolve_field(str(children[0]), self.warnings)

    def value(self, children: list[Any]) -> Any:
        return children[0]

    constant = non_string_value = value

    def not_implemented_string(self, children: list[Any]) -> Any:
        raise FilterNotImplementedError("comparing a constant with a string constant is not supported", parameter="filter")

    def _op_value_pairs(self, children: list[Any]) -> tuple[tuple[str, Any], ...]:
        pairs, op = [], "="
        for child in children:
            if isinstance(child, Token) and child.type == "OPERATOR":
                op = str(child)
            else:
                pairs.append((op, child))
                op = "="
        self._count(len(pairs))
        return tuple(pairs)

    value_list = value_zip = _op_value_pairs

    def value_zip_list(self, children: list[Any]) -> tuple[Any, ...]:
        return tuple(children)

    def property_zip_addon(self, children: list[FieldSpec]) -> tuple[FieldSpec, ...]:
        return tuple(children)

    # ------------------------------------------------------------------ right-hand sides
    def value_op_rhs(self, children: list[Any]) -> _Rhs:
        return _Rhs("cmp", op=str(children[0]), value=children[1])

    def known_op_rhs(self, children: list[Token]) -> _Rhs:
        return _Rhs("known", value=children[1].type == "KNOWN")

    def fuzzy_string_op_rhs(self, children: list[Any]) -> _Rhs:
        return _Rhs("fuzzy", mode=children[0].type, value=children[-1])

    def set_op_rhs(self, children: list[Any]) -> _Rhs:
        rest = children[1:]
        if rest and isinstance(rest[0], Token) and rest[0].type in ("ALL", "ANY", "ONLY"):
            return _Rhs("has", mode=rest[0].type, items=rest[1])
        op = str(rest[0]) if len(rest) == 2 else "="
        return _Rhs("has", items=((op, rest[-1]),))

    def length_op_rhs(self, children: list[Any]) -> _Rhs:
        op = str(children[1]) if len(children) == 3 else "="
        return _Rhs("length", op=op, value=children[-1])

    def set_zip_op_rhs(self, children: list[Any]) -> _Rhs:
        props, rest = children[0], children[2:]
        if isinstance(rest[0], Token):
            return _Rhs("zip", mode=rest[0].type, items=rest[1], props=props)
        return _Rhs("zip", mode="", items=(rest[0],), props=props)

    # ------------------------------------------------------------------ boolean structure
    def expression(self, children: list[Any]) -> Any:
        return children[0] if len(children) == 1 else or_(*children)

    def expression_clause(self, children: list[Any]) -> Any:
        return children[0] if len(children) == 1 else and_(*children)

    def expression_phrase(self, children: list[Any]) -> Any:
        if len(children) == 2:  # NOT, expression
            return not_(children[1])
        return children[0]

    def comparison(self, children: list[Any]) -> Any:
        return children[0]

    def constant_first_comparison(self, children: list[Any]) -> Any:
        constant, op, rhs = children[0], str(children[1]), children[2]
        self._count()
        if isinstance(rhs, FieldSpec):
            return self._compare(rhs, _REVERSED[op], constant)
        if _is_number(constant) and _is_number(rhs):
            return true() if _OPS[op](constant, rhs) else false()
        raise BadFilterError(f"cannot compare {constant!r} {op} {rhs!r}", parameter="filter")

    def property_first_comparison(self, children: list[Any]) -> Any:
        spec, rhs = children
        self._count()
        if rhs.kind == "cmp":
            return self._compare(spec, rhs.op, rhs.value)
        if rhs.kind == "known":
            return self._known(spec, rhs.value)
        if rhs.kind == "fuzzy":
            return self._fuzzy(spec, rhs.mode, rhs.value)
        if rhs.kind == "has":
            return self._has(spec, rhs.mode, rhs.items)
        if rhs.kind == "length":
            return self._length(spec, rhs.op, rhs.value)
        return self._zip((spec, *rhs.props), rhs.mode, rhs.items)

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        raise FilterNotImplementedError(f"filter construct {data!s} is not supported", parameter="filter")

    def _count(self, n: int = 1) -> None:
        self.terms += n
        if self.terms > self.max_terms:
            raise BadFilterError(f"filter has more than {self.max_terms} comparisons and list values", parameter="filter")

    def _probe(self, n: int = 1) -> None:
        """Count ``n`` probes of a child table (each an index lookup or semi-join)."""
        self.probes += n
        self.cost += n
        if self.probes > self.max_probes:
            raise FilterTooCostlyError(
                f"filter needs more than {self.max_probes} probes of the element, guard and record tables "
                f"(limit max_probes); split it into several requests",
                parameter="filter",
            )

    def _scan(self) -> None:
        """Count a construct that only a scan of the candidates answers."""
        self.cost += 2

    def _distinct(self, what: str, mode: str, items: tuple[Any, ...]) -> tuple[Any, ...]:
        """``items`` without repeats, refused beyond the list limit of ``mode``."""
        unique = tuple(dict.fromkeys(items))
        limit, name = (self.max_all_values, "max_all_values") if mode in ("ALL", "") else (self.max_list_values, "max_list_values")
        if len(unique) > limit:
            raise FilterTooCostlyError(
                f"{what} HAS {mode or 'ALL'} lists {len(unique)} distinct values; at most {limit} are accepted (limit {name})",
                parameter="filter",
            )
        return unique

    # ------------------------------------------------------------------ comparisons
    def _check_value(self, spec: FieldSpec, value: Any) -> Any:
        """``value`` converted for comparison with scalar field ``spec`` (type mismatches raise)."""
        if spec.type == "string":
            if not isinstance(value, str):
                raise BadFilterError(f"{spec.name} is a string; compare it with a quoted string, not {value!r}", parameter="filter")
            return value
        if spec.type in ("integer", "float"):
            if not _is_number(value):
                raise BadFilterError(f"{spec.name} is a number; compare it with a number, not {value!r}", parameter="filter")
            return value
        if spec.type == "timestamp":
            if not isinstance(value, str):
                raise BadFilterError(f"{spec.name} is a timestamp; compare it with a quoted RFC 3339 string", parameter="filter")
            try:
                stamp = dt.datetime.fromisoformat(value)
            except ValueError:
                raise BadFilterError(f"{value!r} is not an RFC 3339 timestamp (e.g. \"2026-01-31T12:00:00Z\")", parameter="filter") from None
            return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)
        raise BadFilterError(f"{spec.name} is a {spec.type}; use HAS, HAS ALL/ANY/ONLY or LENGTH", parameter="filter")

    def _compare(self, spec: FieldSpec, op: str, value: Any) -> ColumnElement[bool]:
        target = spec.target
        if isinstance(target, UnknownTarget):
            return false()
        if target is None:
            raise FilterNotImplementedError(f"filtering on {spec.name} is not supported", parameter="filter")
        if isinstance(value, FieldSpec):
            return self._compare_fields(spec, op, value)
        value = self._check_value(spec, value)
        if isinstance(target, ConstantTarget):
            return true() if _OPS[op](target.value, value) else false()
        if isinstance(target, RecordTarget):
            self._probe(1 if op in ("<", "<=") else 2)
            return record_compare(target, op, value)
        if not isinstance(target, ColumnTarget):  # pragma: no cover - _check_value refused list fields
            raise FilterNotImplementedError(f"filtering on {spec.name} is not supported", parameter="filter")
        if spec.name == "chemical_formula_reduced" and op in ("=", "!=") and isinstance(value, str):
            normalised = _alphabetical_formula(value)
            if normalised is not None and normalised != value:
                self.warnings.append(
                    OptimadeWarning(
                        "FieldValueNormalised",
                        f"chemical_formula_reduced {value!r} was read as {normalised!r} (OPTIMADE orders elements alphabetically)",
                    )
                )
                value = normalised
        expr = _OPS[op](target.column, value)
        return and_(target.column.is_not(None), expr) if target.nullable else expr

    def _compare_fields(self, spec: FieldSpec, op: str, other: FieldSpec) -> ColumnElement[bool]:
        a, b = spec.target, other.target
        if isinstance(b, UnknownTarget):
            return false()
        numeric = {"integer", "float"}
        same_kind = spec.type == other.type or (spec.type in numeric and other.type in numeric)
        if not (isinstance(a, ColumnTarget) and isinstance(b, ColumnTarget) and same_kind):
            raise FilterNotImplementedError(
                f"comparing {spec.name} with {other.name} is not supported (only two plain scalar fields of one type)",
                parameter="filter",
            )
        self._scan()
        return and_(a.column.is_not(None), b.column.is_not(None), _OPS[op](a.column, b.column))

    def _known(self, spec: FieldSpec, known: bool) -> ColumnElement[bool]:
        target = spec.target
        if isinstance(target, UnknownTarget):
            condition: ColumnElement[bool] = false()
        elif isinstance(target, ColumnTarget) and target.nullable:
            condition = target.column.is_not(None)
        elif isinstance(target, RecordTarget):
            self._probe()
            candidate_id, column, base = target.parts()
            condition = member(candidate_id, *base, column.is_not(None))
        else:
            condition = true()
        return condition if known else not_(condition)

    def _fuzzy(self, spec: FieldSpec, mode: str, value: Any) -> ColumnElement[bool]:
        target = spec.target
        if isinstance(target, UnknownTarget):
            return false()
        if spec.type != "string" or not isinstance(value, str):
            raise BadFilterError(f"{mode} needs a string field and a quoted string; got {spec.name} {mode} {value!r}", parameter="filter")
        if isinstance(target, ConstantTarget):
            text = target.value
            hit = value in text if mode == "CONTAINS" else text.startswith(value) if mode == "STARTS" else text.endswith(value)
            return true() if hit else false()
        if not isinstance(target, ColumnTarget):  # pragma: no cover - every string field is a column or constant
            raise FilterNotImplementedError(f"{mode} on {spec.name} is not supported", parameter="filter")
        self._scan()
        column = target.column
        if not value:
            expr: ColumnElement[bool] = column.is_not(None)
        elif self.dialect == "postgresql":  # LIKE is case-sensitive there; autoescape makes % and _ literal
            method = {"CONTAINS": column.contains, "STARTS": column.startswith, "ENDS": column.endswith}[mode]
            expr = method(value, autoescape=True)
        else:  # SQLite's LIKE ignores ASCII case: use exact substring functions
            n = len(value)
            expr = {
                "CONTAINS": lambda: func.instr(column, value) > 0,
                "STARTS": lambda: func.substr(column, 1, n) == value,
                "ENDS": lambda: func.substr(column, -n) == value,
            }[mode]()
        return and_(column.is_not(None), expr) if target.nullable else expr

    # ------------------------------------------------------------------ lists
    def _list_condition(self, spec: FieldSpec, op: str, value: Any) -> tuple[Any, tuple[Any, ...], ColumnElement[bool]]:
        """(candidate id column, conditions of the list's rows, condition of one item) of a table-backed list."""
        target = spec.target
        if isinstance(target, ElementTarget):
            if target.what == "elements_ratios":
                if not _is_number(value):
                    raise BadFilterError(f"elements_ratios holds numbers; got {value!r}", parameter="filter")
                return _E.candidate_id, (), and_(_E.ratio.is_not(None), _OPS[op](_E.ratio, value))
            if not isinstance(value, str):
                raise BadFilterError(f"{spec.name} holds element symbols; got {value!r}", parameter="filter")
            return _E.candidate_id, (), _OPS[op](_E.element, value)
        if isinstance(target, GuardTarget):
            if not isinstance(value, str):
                raise BadFilterError(f"{spec.name} holds guard names; got {value!r}", parameter="filter")
            return _V.candidate_id, (_V.ok == target.ok,), _OPS[op](_V.guard, value)
        raise BadFilterError(f"{spec.name} is not a list; HAS needs a list field", parameter="filter")

    def _set_condition(self, candidate_id: Any, base: tuple[Any, ...], mode: str, items: list[ColumnElement[bool]]) -> ColumnElement[bool]:
        """HAS / HAS ALL / HAS ANY / HAS ONLY over the rows ``base`` selects, one condition per item."""
        if mode == "ANY":
            self._probe()
            return member(candidate_id, *base, or_(*items))
        if mode == "ONLY":
            # Every row matches some item; the IN part only narrows the scan (any non-empty list
            # that satisfies ONLY has a row matching an item). Empty lists (no guards) match too.
            only = not_member(candidate_id, *base, not_(or_(*items)))
            if candidate_id is _E.candidate_id:
                self._probe(2)
                return and_(member(candidate_id, *base, or_(*items)), only)
            self._probe()
            return only
        self._probe(len(items))
        return and_(*[member(candidate_id, *base, item) for item in items])

    def _has(self, spec: FieldSpec, mode: str, items: tuple[tuple[str, Any], ...]) -> ColumnElement[bool]:
        target = spec.target
        if isinstance(target, UnknownTarget):
            return false()
        if target is None or spec.type != "list":
            if target is None:
                raise FilterNotImplementedError(f"filtering on {spec.name} is not supported", parameter="filter")
            raise BadFilterError(f"{spec.name} is not a list; HAS needs a list field", parameter="filter")
        if any(isinstance(v, FieldSpec) for _, v in items):
            raise FilterNotImplementedError("properties inside HAS value lists are not supported", parameter="filter")
        items = self._distinct(spec.name, mode, items)
        if isinstance(target, ConstantListTarget):
            hits = [any(_safe_op(op, x, v) for x in target.values) for op, v in items]
            if mode == "ONLY":
                ok = all(any(_safe_op(op, x, v) for op, v in items) for x in target.values)
            else:
                ok = any(hits) if mode == "ANY" else all(hits)
            return true() if ok else false()
        system = chemical_system(target, mode, items)
        if system is not None:
            self.cost += 1
            return system
        symbols = element_symbols(target, items)
        if symbols is not None and self.elements_index:
            self._probe()  # one GIN index probe, however many symbols
            return elements_array_match(mode, symbols)
        if symbols is not None and mode in ("ANY", "ONLY"):
            # One IN list instead of an OR of comparisons: a single index range scan per symbol.
            return self._set_condition(_E.candidate_id, (), mode, [_E.element.in_(symbols)])
        parts = [self._list_condition(spec, op, v) for op, v in items]
        candidate_id, base = parts[0][0], parts[0][1]
        return self._set_condition(candidate_id, base, mode, [item for _, _, item in parts])

    def _length(self, spec: FieldSpec, op: str, n: int) -> ColumnElement[bool]:
        target = spec.target
        if isinstance(target, UnknownTarget):
            return false()
        if spec.type != "list" or target is None:
            if target is None:
                raise FilterNotImplementedError(f"LENGTH of {spec.name} is not supported", parameter="filter")
            raise BadFilterError(f"{spec.name} is not a list; LENGTH needs a list field", parameter="filter")
        if isinstance(target, ConstantListTarget):
            return true() if _OPS[op](len(target.values), n) else false()
        if isinstance(target, ElementTarget):
            return _OPS[op](_C.nsites if target.what == "species_at_sites" else _C.nelements, n)
        if isinstance(target, GuardTarget):
            self._scan()
            count = (
                select(func.count())
                .where(_V.candidate_id == _C.id, _V.ok == target.ok)
                .correlate(_C.__table__)
                .scalar_subquery()
            )
            return _OPS[op](count, n)
        raise FilterNotImplementedError(f"LENGTH of {spec.name} is not supported", parameter="filter")  # pragma: no cover

    def _zip(self, specs: tuple[FieldSpec, ...], mode: str, zips: tuple[tuple[tuple[str, Any], ...], ...]) -> ColumnElement[bool]:
        names = [s.name for s in specs]
        if sorted(names) != ["elements", "elements_ratios"]:
            raise FilterNotImplementedError(
                f"zip queries are supported for elements:elements_ratios only, not {':'.join(names)}", parameter="filter"
            )
        conditions = []
        zips = self._distinct(":".join(names), mode, zips)
        for pairs in zips:
            if len(pairs) != len(specs):
                raise BadFilterError(f"each value tuple needs {len(specs)} values for {':'.join(names)}", parameter="filter")
            parts = [self._list_condition(spec, op, v)[2] for spec, (op, v) in zip(specs, pairs, strict=True)]
            conditions.append(and_(*parts))
        return self._set_condition(_E.candidate_id, (), mode, conditions)


def _abridged(digits: str) -> str:
    """A long number as its first and last digits and its length (error messages stay short)."""
    return digits if len(digits) <= 40 else f"{digits[:12]}…{digits[-6:]} ({len(digits)} characters)"


def _safe_op(op: str, left: Any, right: Any) -> bool:
    """``left op right`` for constant lists; values of different kinds never match."""
    try:
        return bool(_OPS[op](left, right))
    except TypeError:
        return False
