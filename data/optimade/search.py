"""Read-only searches of the candidate store with OPTIMADE filters: one page of documents and counts.

Used by the API (:mod:`crystaloop.data.optimade.app`) and by ``crystaloop db query``. The engine
from :func:`open_readonly_engine` cannot change data: SQLite connections run with
``PRAGMA query_only``, PostgreSQL sessions are ``READ ONLY`` with a statement timeout, and every
search runs in a transaction that is rolled back.

Bounds per request (with ``timeout_s``): on PostgreSQL each statement of a search runs under
``SET LOCAL statement_timeout`` set to what is left of the request's budget; on SQLite a progress
handler interrupts the statement once the budget is spent. Either way the request ends with
:class:`QueryTimeoutError` (503) and its connection goes back to the pool. Searches whose filter
:attr:`~crystaloop.data.optimade.filters.Translation.cost` reaches ``expensive_cost`` (or that
sort by a record field or skip ``expensive_offset`` rows) first take a slot of the
:class:`~crystaloop.data.optimade.limits.QueryLimiter`: fewer slots than connections, so cheap
searches always find one. A pool without a free connection within the pool timeout answers
:class:`OverloadedError` (503, ``Retry-After``).

Counts (``meta.data_returned``) are exact. A filter made of element predicates alone (``elements
HAS ALL/ANY/ONLY``, ``nelements``, ``LENGTH elements`` and their AND/OR/NOT) is counted from the
element-set summary of revision 0006 (:mod:`crystaloop.data.optimade.element_sets`), one row per
distinct element list, and on PostgreSQL its page (in id order) by reading the first ids of each
matching list from the index on ``(elements, id)`` when that takes fewer rows than a walk; any other
filter is counted by ``count(*)`` of its matches, reused while the store is not written
(:mod:`crystaloop.data.optimade.counts`).

Example::

    engine = open_readonly_engine("sqlite:///runs/demo/store.db")
    page = StructureSearch(engine).search('elements HAS ALL "Sr","Ti"', limit=10)
    print(page.data_returned, [d["attributes"]["chemical_formula_reduced"] for d in page.documents])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, func, inspect, select, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from crystaloop.data.errors import StoreError
from crystaloop.data.optimade.counts import CountCache
from crystaloop.data.optimade.element_sets import (
    ELEMENT_SETS,
    element_set_condition,
    element_set_lists,
    element_set_total,
    first_ids_page,
)
from crystaloop.data.optimade.entries import DEFAULT_FIELDS, structure_document, tables_for
from crystaloop.data.optimade.errors import BadFilterError, OptimadeWarning, OverloadedError, QueryTimeoutError
from crystaloop.data.optimade.fields import ColumnTarget, RecordTarget, resolve_field, sort_key
from crystaloop.data.optimade.filters import MAX_FILTER_LENGTH, FilterTranslator, Translation
from crystaloop.data.optimade.limits import QueryLimiter
from crystaloop.data.store.engine import create_store_engine, redact_url
from crystaloop.data.store.schema import CandidateRow, MeasurementRow, PredictionRow, VerdictRow

__all__ = ["Page", "StructureSearch", "open_readonly_engine", "parse_sort", "STATEMENT_TIMEOUT_S"]

logger = logging.getLogger(__name__)

STATEMENT_TIMEOUT_S = 30.0
"""Longest a single SQL statement may run on PostgreSQL before it is cancelled (seconds)."""

_CANDIDATES: Table = CandidateRow.__table__  # type: ignore[assignment]
_RECORDS: dict[str, tuple[Table, tuple[Any, ...]]] = {
    "predictions": (PredictionRow.__table__, (PredictionRow.created_at, PredictionRow.id)),  # type: ignore[dict-item]
    "measurements": (MeasurementRow.__table__, (MeasurementRow.id,)),  # type: ignore[dict-item]
    "verdicts": (VerdictRow.__table__, (VerdictRow.id,)),  # type: ignore[dict-item]
}
_IN_CHUNK = 500
_PROGRESS_STEPS = 2000  # SQLite virtual-machine steps between deadline checks (~0.1 ms)
EXPENSIVE_COST = 3
"""Filter cost from which a search takes an expensive-query slot (three probes, or a scan and a probe)."""
MAX_LIST_ENTRIES = 20_000
"""Most index entries (element lists × (offset + limit)) a page read list by list may take (PostgreSQL)."""
EXPENSIVE_OFFSET = 10_000
"""``page_offset`` from which a search takes an expensive-query slot (the skipped rows are read)."""


def open_readonly_engine(url: str | None = None, *, statement_timeout_s: float | None = STATEMENT_TIMEOUT_S, **kwargs: Any) -> Engine:
    """An engine on the store at ``url`` whose connections cannot write.

    Args:
        url: store URL (see :func:`crystaloop.data.store.resolve_store_url`).
        statement_timeout_s: PostgreSQL ``statement_timeout`` in seconds (``None``: none).
        kwargs: passed to :func:`sqlalchemy.create_engine` (pool sizes).
    """
    engine = create_store_engine(url, **kwargs)
    dialect = engine.dialect.name

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if dialect == "sqlite":
                cursor.execute("PRAGMA query_only = ON")
            else:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                if statement_timeout_s:
                    cursor.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
        finally:
            cursor.close()
        if dialect != "sqlite":
            dbapi_connection.commit()

    return engine


def _page(conditions: list[Any], order: list[Any], limit: int, offset: int, *, materialize: bool) -> Any:
    """SELECT of one page of candidate rows.

    With ``materialize`` (few matches, PostgreSQL) the matching ids are computed first in a
    materialised CTE and only those rows are sorted: otherwise PostgreSQL may walk the whole
    primary-key index in id order hoping to meet ``limit`` matches early, which is slow when
    matches are rare (380 ms instead of the count's 140 ms for a campaign + energy filter at 10⁶
    candidates). SQLite drives such queries from the filter's index anyway and is slower with it.
    """
    if not materialize:
        return select(_CANDIDATES).where(*conditions).order_by(*order).limit(limit).offset(offset)
    matched = select(CandidateRow.id.label("matched_id")).where(*conditions).cte("matched").prefix_with("MATERIALIZED")
    return (
        select(_CANDIDATES)
        .join(matched, CandidateRow.id == matched.c.matched_id)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )


def parse_sort(text: str | None) -> list[Any]:
    """ORDER BY clauses for a JSON:API ``sort`` value (``"nsites,-id"``), ending with ``id``.

    Raises:
        BadFilterError: an unknown or unsortable field (HTTP 400).
    """
    order: list[Any] = []
    seen: set[str] = set()
    for raw in (text or "").split(","):
        name = raw.strip()
        if not name:
            continue
        descending = name.startswith("-")
        name = name.lstrip("-")
        if name in seen:
            continue
        seen.add(name)
        try:
            key = sort_key(name)
        except BadFilterError as exc:
            raise BadFilterError(str(exc), parameter="sort") from None
        if key is None:
            continue
        target = resolve_field(name).target
        nullable = not isinstance(target, ColumnTarget) or target.nullable
        clause = key.desc() if descending else key.asc()
        order.append(clause.nulls_last() if nullable else clause)
        if key is CandidateRow.id:
            return order
    order.append(CandidateRow.id.asc())
    return order


@dataclass
class Page:
    """One page of a search: documents, how many match in all, and the warnings raised."""

    documents: list[dict[str, Any]]
    data_returned: int
    data_available: int
    more_data_available: bool
    warnings: list[OptimadeWarning] = field(default_factory=list)


class StructureSearch:
    """OPTIMADE searches over a read-only engine (thread-safe; share one per process).

    Args:
        engine: from :func:`open_readonly_engine`.
        total_ttl_s: how long the total number of candidates (``meta.data_available``) is cached.
        max_filter_length: longest filter accepted, characters.
        timeout_s: budget of one search or lookup, seconds (``None``: no limit beyond the
            engine's own statement timeout).
        limiter: slots for expensive searches (``None``: no limit).
        expensive_cost: filter cost from which a search needs a ``limiter`` slot.
        filter_limits: cost limits passed to :class:`FilterTranslator` (``max_all_values``…).
        count_cache_size: filters whose exact ``data_returned`` is reused until the store is
            written (:class:`~crystaloop.data.optimade.counts.CountCache`; 0: count every time).
        element_sets: count filters made of element predicates alone (and ``data_available``)
            from the element-set summary of revision 0006
            (:mod:`~crystaloop.data.optimade.element_sets`), exact without visiting every match;
            ``None``: wherever the store has the summary table, ``False``: count the matches.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        total_ttl_s: float = 5.0,
        max_filter_length: int = MAX_FILTER_LENGTH,
        timeout_s: float | None = None,
        limiter: QueryLimiter | None = None,
        expensive_cost: int = EXPENSIVE_COST,
        filter_limits: Mapping[str, int] | None = None,
        count_cache_size: int = 4096,
        element_sets: bool | None = None,
    ) -> None:
        self.engine = engine
        self.translator = FilterTranslator(engine.dialect.name, max_length=max_filter_length, **(filter_limits or {}))
        self._postgres = engine.dialect.name == "postgresql"  # SQLite plans rare matches well by itself
        self._total_ttl_s = total_ttl_s
        self._total: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self.timeout_s = timeout_s
        self.limiter = limiter
        self.expensive_cost = expensive_cost
        self.counts = CountCache(engine, _CANDIDATES, size=count_cache_size)
        if element_sets is None:
            try:
                element_sets = inspect(engine).has_table(ELEMENT_SETS.name)
            except SQLAlchemyError as exc:
                raise StoreError(f"store {redact_url(str(engine.url))}: {exc}") from exc
        self.element_sets = element_sets

    def is_expensive(self, cost: int, *, sort: str | None = None, offset: int = 0) -> bool:
        """Whether a search of filter cost ``cost`` with this sort and offset needs a limiter slot."""
        by_record = any(
            isinstance(resolve_field(name.strip().lstrip("-")).target, RecordTarget) for name in (sort or "").split(",") if name.strip()
        )
        return cost >= self.expensive_cost or by_record or offset >= EXPENSIVE_OFFSET

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        try:
            with self.engine.connect() as conn:
                raw = None if self._postgres or deadline is None else conn.connection.dbapi_connection
                if raw is not None:  # SQLite: interrupt the running statement past the deadline
                    raw.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
                try:
                    conn.info["deadline"] = deadline
                    self._arm(conn)
                    yield conn  # never committed: closing rolls back
                finally:
                    conn.info.pop("deadline", None)
                    if raw is not None:
                        raw.set_progress_handler(None, _PROGRESS_STEPS)
        except PoolTimeoutError:
            raise OverloadedError("no database connection became free in time; retry shortly", retry_after=1) from None
        except OperationalError as exc:
            message = str(exc)
            if "statement timeout" in message or "canceling statement" in message or "interrupted" in message:
                raise self._timeout() from None
            raise StoreError(f"store {redact_url(str(self.engine.url))}: {exc.orig}") from exc
        except (DBAPIError, SQLAlchemyError) as exc:
            raise StoreError(f"store {redact_url(str(self.engine.url))}: {exc}") from exc

    def _timeout(self) -> QueryTimeoutError:
        budget = f"the {self.timeout_s:g} s request timeout" if self.timeout_s is not None else "the statement timeout"
        return QueryTimeoutError(f"the query ran past {budget}; narrow the filter or lower page_offset")

    def _arm(self, conn: Connection) -> None:
        """PostgreSQL: limit the next statements to what is left of the request's budget."""
        deadline = conn.info.get("deadline")
        if deadline is None or not self._postgres:
            return
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms < 1:
            raise self._timeout()
        conn.execute(text(f"SET LOCAL statement_timeout = {left_ms}"))

    def total(self, conn: Connection | None = None) -> int:
        """Number of candidates in the store (cached for ``total_ttl_s`` seconds)."""
        now = time.monotonic()
        with self._lock:
            if self._total is not None and now - self._total[0] < self._total_ttl_s:
                return self._total[1]
        if conn is None:
            with self._connection() as own:
                return self.total(own)
        stmt = element_set_total() if self.element_sets else select(func.count()).select_from(_CANDIDATES)
        value = int(conn.execute(stmt).scalar_one())
        with self._lock:
            self._total = (now, value)
        return value

    def search(
        self,
        filter_text: str | None = None,
        *,
        sort: str | None = None,
        limit: int = 20,
        offset: int = 0,
        fields: Sequence[str] = DEFAULT_FIELDS,
        link: Callable[[str], str] | None = None,
    ) -> Page:
        """One page of structures matching ``filter_text``, ordered by ``sort`` then id.

        Args:
            filter_text: an OPTIMADE filter (``None``/blank: everything).
            sort: JSON:API sort fields, ``-`` for descending.
            limit: page size (≥ 0).
            offset: rows skipped first.
            fields: attributes to return.
            link: id → URL of the single-entry endpoint, for ``links.self``.

        Raises:
            BadFilterError, FilterNotImplementedError: the filter or sort is bad or unsupported.
            QueryTimeoutError: the database did not answer in time.
            OverloadedError: every expensive-query slot or connection is busy (503, retry).
        """
        translation = self.translator.translate(filter_text)
        order = parse_sort(sort)
        expensive = self.limiter is not None and self.is_expensive(translation.cost, sort=sort, offset=offset)
        with self.limiter.slot() if expensive and self.limiter is not None else nullcontext():
            return self._search(translation, order, limit, offset, fields, link)

    def _search(
        self, translation: Translation, order: list[Any], limit: int, offset: int, fields: Sequence[str], link: Callable[[str], str] | None
    ) -> Page:
        conditions = [translation.where] if translation.where is not None else []
        with self._connection() as conn:
            data_available = self.total(conn)
            summary = element_set_condition(translation, self.engine.dialect.name) if self.element_sets and conditions else None
            lists: list[str] = []
            if summary is not None:  # element-only filter: exact count from the summary
                matched = conn.execute(element_set_lists(summary)).all()
                lists = [str(e) for e, _ in matched]
                data_returned = int(sum(n for _, n in matched))
            elif conditions:
                data_returned = self.counts.count(conn, translation.where)
            else:
                data_returned = data_available
            rows: list[dict[str, Any]] = []
            if limit > 0 and offset < data_returned:
                # A walk in sort order meets `offset + limit` of M matches among N rows after about
                # (offset + limit) * N / M rows; materialising fetches the M rows at random, ~16x the
                # cost per row (measured at 10⁶): only worth it for rare matches, where it bounds the
                # worst case (a whole-index walk) to M row fetches. An element-only filter matching k
                # element lists can instead read (offset + limit) ids per list from an index: cheaper
                # than the walk when k < N / M.
                by_lists = (
                    self._postgres
                    and bool(lists)
                    and len(order) == 1
                    and order[0].compare(CandidateRow.id.asc())
                    and len(lists) * (offset + limit) <= MAX_LIST_ENTRIES
                    and len(lists) * data_returned <= data_available
                )
                selective = self._postgres and bool(conditions) and 16 * data_returned**2 <= (offset + limit) * data_available
                if by_lists:
                    stmt = first_ids_page(lists, limit, offset)
                else:
                    stmt = _page(conditions, order, limit, offset, materialize=selective)
                self._arm(conn)
                rows = [dict(r._mapping) for r in conn.execute(stmt)]
            records = self._records(conn, [r["id"] for r in rows], tables_for(fields))
        documents = [
            structure_document(r, fields, records.get(r["id"]), self_link=link(r["id"]) if link else None) for r in rows
        ]
        return Page(
            documents=documents,
            data_returned=data_returned,
            data_available=data_available,
            more_data_available=offset + len(rows) < data_returned,
            warnings=translation.warnings,
        )

    def get(self, entry_id: str, *, fields: Sequence[str] = DEFAULT_FIELDS) -> tuple[dict[str, Any] | None, int]:
        """(The document with this id or ``None``, total number of candidates)."""
        with self._connection() as conn:
            row = conn.execute(select(_CANDIDATES).where(CandidateRow.id == entry_id)).first()
            records = self._records(conn, [entry_id] if row else [], tables_for(fields))
            total = self.total(conn)
        if row is None:
            return None, total
        return structure_document(dict(row._mapping), fields, records.get(entry_id)), total

    @staticmethod
    def _records(conn: Connection, ids: list[str], tables: set[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        out: dict[str, dict[str, list[dict[str, Any]]]] = {cid: {} for cid in ids}
        if not ids:
            return out
        for name in sorted(tables):
            table, order = _RECORDS[name]
            for start in range(0, len(ids), _IN_CHUNK):
                part = ids[start : start + _IN_CHUNK]
                stmt = select(table).where(table.c.candidate_id.in_(part)).order_by(*order)
                for row in conn.execute(stmt):
                    out[row.candidate_id].setdefault(name, []).append(dict(row._mapping))
        return out
