"""Store URLs and engines: which database, and how to talk to it safely from several processes.

Two backends are supported and behave the same way: a SQLite file (the default,
``sqlite:///crystaloop.db``) and PostgreSQL through the psycopg 3 driver. For SQLite every
connection runs in WAL mode with a 30 s ``busy_timeout`` and foreign keys on, and write
transactions start with ``BEGIN IMMEDIATE`` so two processes writing the same file queue for the
write lock instead of failing with ``database is locked`` half-way through a transaction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from crystaloop.data.errors import StoreError

__all__ = [
    "ENV_VAR",
    "DEFAULT_STORE_URL",
    "ACCEPTED_URL_FORMS",
    "SQLITE_BUSY_TIMEOUT_S",
    "resolve_store_url",
    "existing_store_url",
    "create_store_engine",
    "write_transaction",
    "redact_url",
]

logger = logging.getLogger(__name__)

ENV_VAR = "CRYSTALOOP_DB_URL"
DEFAULT_STORE_URL = "sqlite:///crystaloop.db"
ACCEPTED_URL_FORMS = (
    "sqlite:///relative/path.db",
    "sqlite:////absolute/path.db",
    "sqlite:// (in memory)",
    "postgresql://user[:password]@host[:port]/database",
    "postgresql+psycopg://user[:password]@host[:port]/database",
)
SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long (seconds) a SQLite connection waits for another process's write lock."""

SQLITE_CACHE_KIB = 32768
"""Page cache per SQLite connection (KiB); the default 2 MiB thrashes on 10⁵ candidates."""

_WRITE_OPTION = "crystaloop_write"


def resolve_store_url(url: str | None = None) -> str:
    """The store URL to use: ``url`` if given, else ``$CRYSTALOOP_DB_URL``, else the default.

    An empty string counts as not given. ``postgresql://`` and ``postgres://`` URLs are mapped to
    the psycopg 3 driver (``postgresql+psycopg://``).

    Raises:
        StoreError: the value is not a SQLAlchemy URL of a supported backend; the message names
            the value and the accepted forms.
    """
    if url is not None and not isinstance(url, str):
        raise StoreError(f"store URL must be a string, got {type(url).__name__} {url!r}; accepted: {_forms()}")
    raw = (url or "").strip() or os.environ.get(ENV_VAR, "").strip() or DEFAULT_STORE_URL
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"not a database URL: {raw!r} ({exc}); accepted: {_forms()}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if parsed.database and parsed.database.startswith("~"):
            parsed = parsed.set(database=os.path.expanduser(parsed.database))
        return parsed.render_as_string(hide_password=False)
    if backend == "postgresql" and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise StoreError(
        f"unsupported database URL {redact_url(raw)!r} (backend {parsed.drivername!r}); accepted: {_forms()}"
    )


def existing_store_url(url: str | None = None) -> str:
    """:func:`resolve_store_url` for commands that only read: a SQLite file must already exist.

    Nothing is created (no folder, no empty database); a PostgreSQL URL is returned as resolved
    (connecting tells whether the database exists).

    Raises:
        StoreError: a bad URL, or a SQLite file that does not exist (the message names the path).
    """
    resolved = resolve_store_url(url)
    parsed = make_url(resolved)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database not in ("", ":memory:") and not database.startswith("file:") and not Path(database).is_file():
            raise StoreError(
                f"no store at {database!r} (from {redact_url(resolved)!r}): this command only reads and creates "
                "nothing; give the URL of an existing store, or fill one first with `crystaloop data import ... "
                "--store URL`, `crystaloop generate ... --store URL` or `crystaloop demo`"
            )
    return resolved


def redact_url(url: str | URL) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return str(url)


def create_store_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url`` (resolved with :func:`resolve_store_url`).

    For a SQLite file the parent directory is created. ``kwargs`` go to
    :func:`sqlalchemy.create_engine`.
    """
    resolved = make_url(resolve_store_url(url))
    if resolved.get_backend_name() == "sqlite":
        database = resolved.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file:")
        if not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = create_engine(resolved, connect_args=connect_args, **kwargs)
        _install_sqlite_events(engine, wal=not in_memory)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(resolved, **kwargs)


def _install_sqlite_events(engine: Engine, *, wal: bool) -> None:
    """WAL, busy timeout, foreign keys; driver-level autocommit so that we emit BEGIN ourselves.

    pysqlite's own transaction handling begins lazily and cannot start ``BEGIN IMMEDIATE``; taking
    it over (the recipe in SQLAlchemy's SQLite dialect docs) lets write transactions take the write
    lock up front, which is what makes concurrent writers wait for each other instead of failing.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one write transaction: committed on success, rolled back on error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE`` (waits up to the busy timeout for
    other writers); on PostgreSQL it is an ordinary READ COMMITTED transaction.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


def _forms() -> str:
    return ", ".join(ACCEPTED_URL_FORMS)
