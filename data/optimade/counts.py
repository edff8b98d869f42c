"""Exact match counts reused until the store changes: ``meta.data_returned`` without recounting.

A count of the candidates matching a filter costs one visit per match (10⁵ matches: ~0.1–0.6 s on
PostgreSQL at 10⁶ rows). :class:`CountCache` keeps the count of each normalised filter (its SQL
and parameters, so ``HAS ALL "O","O"`` and ``HAS ALL "O"`` share one entry) beside the *store
revision* it was counted at, and serves it only while the revision is unchanged. The revision is
a token that changes whenever a write to the store commits:

* PostgreSQL: the text of ``pg_current_snapshot()`` (``xmin:xmax:in-progress xids``). Two
  statements with equal snapshots see exactly the same committed rows. The count is taken in the
  same statement as its snapshot, so it can never be filed under a revision it did not see. Any
  committed write in the cluster (another database too) changes it: conservative, never stale.
* SQLite: ``PRAGMA data_version`` of one watcher connection that never writes; it changes when
  any other connection or process commits (WAL or rollback journal). It is read before the count,
  so a count filed under it is at least as new as the revision.
* Other stores (in-memory SQLite): no revision; nothing is cached.

Counts are never estimated: a cached count equals what a fresh ``count(*)`` would return. (A
filter made of element predicates alone does not come here: the search sums the element-set
summary instead, :mod:`crystaloop.data.optimade.element_sets`, as cheap as a revision check.)

Example::

    cache = CountCache(engine)
    n = cache.count(conn, where)   # counted
    n = cache.count(conn, where)   # reused while nothing was written
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, literal_column, select, text

__all__ = ["CountCache"]

logger = logging.getLogger(__name__)

_SNAPSHOT: Any = literal_column("pg_current_snapshot()::text")


class CountCache:
    """Exact counts of ``table`` rows per WHERE expression, valid for one store revision (thread-safe).

    Args:
        engine: the store's engine (PostgreSQL or a SQLite file; others are counted every time).
        table: the table counted.
        size: most filters kept (least recently used dropped first); 0 turns caching off.
    """

    def __init__(self, engine: Engine, table: Table, *, size: int = 4096) -> None:
        self.table = table
        self.size = size
        self.dialect = engine.dialect
        self._postgres = engine.dialect.name == "postgresql"
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._watcher: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        database = engine.url.database
        if size > 0 and engine.dialect.name == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
            try:
                self._watcher = sqlite3.connect(f"file:{database}?mode=ro", uri=True, check_same_thread=False)
            except sqlite3.Error as exc:  # e.g. the file does not exist yet: count every time
                logger.debug("no SQLite revision watcher for %s: %s", database, exc)

    @property
    def enabled(self) -> bool:
        """Whether counts are reused (a revision can be read for this store)."""
        return self.size > 0 and (self._postgres or self._watcher is not None)

    def _key(self, where: Any) -> str:
        compiled = where.compile(dialect=self.dialect)
        return f"{compiled}\x00{sorted(compiled.params.items())!r}"

    def _sqlite_revision(self) -> str | None:
        if self._watcher is None:
            return None
        with self._lock:
            try:
                return str(self._watcher.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def count(self, conn: Connection, where: Any) -> int:
        """Rows of ``table`` matching ``where``, counted on ``conn`` or reused from the same revision."""
        stmt = select(func.count()).select_from(self.table).where(where)
        if not self.enabled:
            return int(conn.execute(stmt).scalar_one())
        key = self._key(where)
        revision: str | None
        if self._postgres:
            revision = str(conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one())
        else:
            revision = self._sqlite_revision()  # before the count: the count is at least this new
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == revision:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            self.misses += 1
        if self._postgres:  # the count and the snapshot it saw, in one statement
            value, revision = conn.execute(stmt.add_columns(_SNAPSHOT)).one()
        else:
            value = conn.execute(stmt).scalar_one()
        if revision is not None:
            with self._lock:
                self._entries[key] = (str(revision), int(value))
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return int(value)

    def close(self) -> None:
        """Close the SQLite watcher connection (if any)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
