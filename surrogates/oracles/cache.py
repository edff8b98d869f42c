"""`OracleCache`: a persistent table of oracle results, so no structure is computed twice.

One row per (oracle key, structure hash, property):

* the **oracle key** names the oracle and hashes every setting that changes its numbers (model
  and package version, :class:`~crystaloop.surrogates.oracles.base.RelaxConfig`), so a changed
  ``fmax`` never reuses a stale relaxation (:meth:`ASEOracle.cache_key
  <crystaloop.surrogates.oracles.base.ASEOracle.cache_key>`);
* the **structure hash** is the input crystal's canonical hash
  (:meth:`~crystaloop.data.crystal.Crystal.canonical_hash`);
* the **property** says what was computed: ``"relaxation"``, ``"single_point"``,
  ``"bulk_modulus:<settings hash>"``.

A row stores status and reason, the value and its units, the final structure (``Crystal.to_dict``
JSON), the input's composition and chemical system (``"Al-Cu"``, for hull queries) and small details (steps, fmax,
seconds). Failed results are stored too, with their reason, but by default look-ups do not serve
them: a failed structure is computed again (and its row overwritten), so a transient fault never
sticks. ``serve_failed=True`` serves them instead (a structure that breaks the calculator is then
not recomputed). Unconverged relaxations are stored and read back as
``unconverged`` with their last energy; they are never returned as hull entries. Creating the
table is safe when several threads or processes open a fresh cache at once. Writes are
insert-or-replace, so writing the same result twice is harmless.

The database is any SQLAlchemy URL; by default its own SQLite file
``$CRYSTALOOP_CACHE_DIR/oracle.db`` (or ``~/.cache/crystaloop/oracle.db``), separate from the
candidate store. The engine is created on first use, not at construction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import DateTime, Engine, Float, String, Text, create_engine, delete, event, func, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import OracleError
from crystaloop.data.store import redact_url

__all__ = ["CachedResult", "OracleCache", "default_cache_url", "chemical_system"]

logger = logging.getLogger(__name__)

_CHUNK = 500
_CREATE_ATTEMPTS = 8  # opening a fresh SQLite cache that others are opening too: tries before giving up (≈ 4 s)
_CREATE_LOCK_KEY = 0x6F726331  # PostgreSQL advisory lock id ("orc1") held while creating the table

CacheStatus = Literal["ok", "failed", "unconverged"]


def default_cache_url() -> str:
    """``sqlite:///$CRYSTALOOP_CACHE_DIR/oracle.db``, or ``~/.cache/crystaloop/oracle.db``."""
    root = os.environ.get("CRYSTALOOP_CACHE_DIR")
    folder = Path(root) if root else Path.home() / ".cache" / "crystaloop"
    return f"sqlite:///{folder / 'oracle.db'}"


def chemical_system(elements: Iterable[str]) -> str:
    """Sorted, dash-joined element symbols: ``["Cu", "Al", "Cu"]`` → ``"Al-Cu"``."""
    return "-".join(sorted(set(elements)))


class _Base(DeclarativeBase):
    pass


class _OracleResultRow(_Base):
    __tablename__ = "oracle_results"

    oracle_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    structure_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    property: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    units: Mapped[str] = mapped_column(String(32), default="")
    chemsys: Mapped[str] = mapped_column(String(256), index=True)
    composition_json: Mapped[str] = mapped_column(Text, default="{}")
    crystal_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class CachedResult:
    """One stored oracle result.

    Attributes:
        status: ``"ok"``, ``"failed"`` or ``"unconverged"`` (a relaxation stopped at its step cap).
        reason: why it failed or did not converge.
        value: the number (units in ``units``), ``None`` when failed; kept when unconverged.
        units: ``"eV/atom"``, ``"GPa"``...
        composition: element → number of sites of the input structure.
        crystal: the final (relaxed) structure, when there is one.
        details: small JSON-able extras (steps, fmax in eV/Å, seconds...).
    """

    status: CacheStatus
    reason: str
    value: float | None
    units: str
    composition: Mapping[str, int]
    crystal: Crystal | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def chemsys(self) -> str:
        """Chemical system of the input structure, ``"Al-Cu"``."""
        return chemical_system(self.composition)


class OracleCache:
    """Persistent oracle results keyed by (oracle key, structure hash, property); see the module.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``sqlite://`` in memory,
            ``postgresql+psycopg://...``); ``None`` → :func:`default_cache_url`.
        serve_failed: look-ups return failed rows too (default: they are invisible, so failed
            structures are computed again). Unconverged rows are no failures: always served.
    """

    def __init__(self, url: str | None = None, *, serve_failed: bool = False) -> None:
        self.url = url or default_cache_url()
        self.serve_failed = serve_failed
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OracleCache({redact_url(self.url)!r}, serve_failed={self.serve_failed})"

    # ------------------------------------------------------------------ engine
    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created (with its table) on first use; safe to call from
        several threads at once (one engine per cache object)."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        try:
            engine = create_engine(self.url)
        except (ArgumentError, ImportError, ValueError) as exc:
            raise OracleError(f"oracle cache URL {redact_url(self.url)!r} is not usable: {exc}") from exc
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout = 30000")
                if database and database != ":memory:":
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.close()

        attempt = 0
        while True:
            try:
                _create_tables(engine)
                return engine
            except SQLAlchemyError as exc:
                # SQLite's switch to WAL takes an exclusive lock without waiting on busy_timeout, so
                # several processes or threads opening one fresh file at once can see "locked": retry
                if "database is locked" not in str(exc) or attempt + 1 >= _CREATE_ATTEMPTS:
                    raise OracleError(f"cannot open the oracle cache at {redact_url(self.url)!r}: {exc}") from exc
            engine.dispose()
            time.sleep(min(0.05 * 2**attempt, 1.0))
            attempt += 1

    # ------------------------------------------------------------------ reads
    def get(self, oracle_key: str, structure_hash: str, prop: str) -> CachedResult | None:
        """The stored result, or ``None`` (also for a failed row unless ``serve_failed``)."""
        return self.get_many(oracle_key, [structure_hash], prop).get(structure_hash)

    def get_many(self, oracle_key: str, structure_hashes: Sequence[str], prop: str) -> dict[str, CachedResult]:
        """Structure hash → stored result for those of ``structure_hashes`` that are stored."""
        found: dict[str, CachedResult] = {}
        unique = list(dict.fromkeys(structure_hashes))
        with Session(self.engine) as session:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                query = select(_OracleResultRow).where(
                    _OracleResultRow.oracle_key == oracle_key,
                    _OracleResultRow.property == prop,
                    _OracleResultRow.structure_hash.in_(chunk),
                )
                if not self.serve_failed:
                    query = query.where(_OracleResultRow.status != "failed")
                for row in session.scalars(query):
                    found[row.structure_hash] = _to_result(row)
        return found

    def all_results(self, oracle_key: str, prop: str = "relaxation") -> list[tuple[Crystal, float]]:
        """(final structure, energy per atom in eV/atom) of every successful ``prop`` row of
        this oracle key that stored a structure (by default every relaxation)."""
        query = select(_OracleResultRow.crystal_json, _OracleResultRow.value).where(
            _OracleResultRow.oracle_key == oracle_key,
            _OracleResultRow.property == prop,
            _OracleResultRow.status == "ok",
            _OracleResultRow.crystal_json.is_not(None),
        )
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        return [(Crystal.from_dict(json.loads(text)), float(value)) for text, value in rows if value is not None]

    def entries_within(
        self, oracle_key: str, elements: Iterable[str], prop: str = "relaxation"
    ) -> list[tuple[str, dict[str, int], float]]:
        """(structure hash, composition, value) of every successful ``prop`` row whose chemical
        system lies within ``elements`` (all its subsystems), for building a convex hull."""
        symbols = sorted(set(elements))
        systems = [chemical_system(c) for k in range(1, len(symbols) + 1) for c in combinations(symbols, k)]
        out: list[tuple[str, dict[str, int], float]] = []
        with Session(self.engine) as session:
            for start in range(0, len(systems), _CHUNK):
                query = select(
                    _OracleResultRow.structure_hash, _OracleResultRow.composition_json, _OracleResultRow.value
                ).where(
                    _OracleResultRow.oracle_key == oracle_key,
                    _OracleResultRow.property == prop,
                    _OracleResultRow.status == "ok",
                    _OracleResultRow.chemsys.in_(systems[start : start + _CHUNK]),
                )
                for structure_hash, composition_json, value in session.execute(query):
                    composition = json.loads(composition_json)
                    if composition and value is not None:
                        out.append((structure_hash, composition, float(value)))
        return out

    def count(self, oracle_key: str | None = None) -> int:
        """Number of stored rows (of one oracle key, or all)."""
        query = select(func.count()).select_from(_OracleResultRow)
        if oracle_key is not None:
            query = query.where(_OracleResultRow.oracle_key == oracle_key)
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    # ------------------------------------------------------------------ writes
    def put(self, oracle_key: str, structure_hash: str, prop: str, result: CachedResult) -> None:
        """Store one result, replacing any row with the same key."""
        self.put_many(oracle_key, prop, [(structure_hash, result)])

    def put_many(self, oracle_key: str, prop: str, items: Sequence[tuple[str, CachedResult]]) -> None:
        """Store several results of one oracle key and property in one transaction (insert or
        replace, so repeating a write is harmless)."""
        if not items:
            return
        now = dt.datetime.now(dt.UTC)
        rows = {}
        for structure_hash, result in items:  # last write of a hash wins, as with separate puts
            rows[structure_hash] = {
                "oracle_key": oracle_key,
                "structure_hash": structure_hash,
                "property": prop,
                "status": result.status,
                "reason": result.reason,
                "value": result.value,
                "units": result.units,
                "chemsys": result.chemsys,
                "composition_json": json.dumps(dict(result.composition), sort_keys=True),
                "crystal_json": json.dumps(result.crystal.to_dict()) if result.crystal is not None else None,
                "details_json": json.dumps(dict(result.details), sort_keys=True),
                "updated_at": now,
            }
        values = list(rows.values())
        dialect = self.engine.dialect.name
        try:
            with Session(self.engine) as session, session.begin():
                if dialect in ("sqlite", "postgresql"):
                    if dialect == "sqlite":
                        from sqlalchemy.dialects.sqlite import insert
                    else:
                        from sqlalchemy.dialects.postgresql import insert
                    for start in range(0, len(values), _CHUNK):
                        statement = insert(_OracleResultRow).values(values[start : start + _CHUNK])
                        replaced = {
                            name: statement.excluded[name]
                            for name in values[0]
                            if name not in ("oracle_key", "structure_hash", "property")
                        }
                        session.execute(
                            statement.on_conflict_do_update(
                                index_elements=["oracle_key", "structure_hash", "property"], set_=replaced
                            )
                        )
                else:
                    for value in values:
                        session.merge(_OracleResultRow(**value))
        except SQLAlchemyError as exc:
            raise OracleError(f"cannot write to the oracle cache at {redact_url(self.url)!r}: {exc}") from exc

    def clear(self, oracle_key: str | None = None) -> int:
        """Delete the rows of one oracle key (or every row); returns how many were deleted."""
        statement = delete(_OracleResultRow)
        if oracle_key is not None:
            statement = statement.where(_OracleResultRow.oracle_key == oracle_key)
        with Session(self.engine) as session, session.begin():
            return int(session.execute(statement).rowcount or 0)


def _create_tables(engine: Engine) -> None:
    """Create the cache's table and indexes unless they exist, safe against concurrent creators.

    ``CREATE … IF NOT EXISTS`` in one transaction: on SQLite the DDL takes the write lock (so a
    second process waits, then finds the table); on PostgreSQL, where two concurrent ``IF NOT
    EXISTS`` can still collide in the catalogue, an advisory lock serialises the creators.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_CREATE_LOCK_KEY)))
        for table in _Base.metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                conn.execute(CreateIndex(index, if_not_exists=True))


def _to_result(row: _OracleResultRow) -> CachedResult:
    crystal = Crystal.from_dict(json.loads(row.crystal_json)) if row.crystal_json else None
    status = cast(CacheStatus, row.status if row.status in ("ok", "unconverged") else "failed")
    return CachedResult(
        status=status,
        reason=row.reason,
        value=row.value,
        units=row.units,
        composition=json.loads(row.composition_json or "{}"),
        crystal=crystal,
        details=json.loads(row.details_json or "{}"),
    )
